"""Registered reconstruction methods. Targets are lazy, so listing methods imports no torch."""

from bench.registry import Registry

METHODS: Registry = Registry("method")

METHODS.register("lir", "methods.lir:LiR")
METHODS.register("mlp", "methods.mlp:MLP")
METHODS.register("bilstm", "methods.seq:BiLSTM")
METHODS.register("transformer", "methods.seq:Transformer")
METHODS.register("c2f_decoder", "methods.c2f:C2FDecoder")
METHODS.register("fine_ldm", "methods.ldm:FineLDM")
METHODS.register("c2f_ldm", "methods.ldm:C2FLDM")
METHODS.register("park", "methods.park:Park")


def get_method(name: str):
    """The method class registered under ``name`` (unknown names suggest close ones)."""
    return METHODS.get(name)
