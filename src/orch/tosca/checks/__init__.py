"""The checks of a topology template, one module per section.

``orch.tosca.topology.TopologyChecker`` builds them and runs them in order. Each class gets the
shared pieces it uses (reporter, type registry, the topology's index, the value and function
checkers, the checks of other sections) in its constructor: nothing is shared behind its back.
This package imports nothing itself, so ``orch.tosca.functions`` can use its modules freely.
"""
