"""Event Hubs, and the only code that imports the `azure.eventhub` SDK: the message type,
name checks, producer, consumer, checkpoint store and the phi-events publisher."""
