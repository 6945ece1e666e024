from phiwatch.cli import main

main()
