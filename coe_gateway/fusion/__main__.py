"""``python -m coe_gateway.fusion``: the fused model's server (:mod:`.server`)."""

from coe_gateway.fusion.server import main

main()
