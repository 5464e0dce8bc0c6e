from coe_gateway.cli import main

main()
