"""What runs the pipeline: the Functions host glue (`functions`), the standalone Event Hubs
consumer loop (`consumer`), the local replay (`replay`), and the health endpoint."""
