from phiwatch.commands.app import main

main()
