"""Executors: one module per implementation kind behind the contract in ``base``.

Only the engine calls executors. An executor receives a ``Task`` (a plan step whose inputs are
already evaluated) and returns an ``OperationResult``; a failed operation is data, not an
exception.
"""
