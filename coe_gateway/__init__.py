"""coe-gateway: an OpenAI-compatible composition-of-experts gateway.

For each chat request a router predicts how well each expert (a locally hosted LLM) would
answer, a policy picks one under cost, quality and budget constraints, and the gateway
dispatches to a healthy worker of that expert. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
