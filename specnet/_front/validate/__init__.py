"""Plain data -> :class:`~specnet._front.spec.Spec`, collecting every error with its location.

One job per module, each stage a layer of the checker:

- ``collector``: the errors, each once, located (values passed into blocks where written);
- ``args``: a type's arguments against its description (shared by layers, containers,
  ``train:`` components and block parameters);
- ``blocks``: block definitions and uses (the "resolve" stage);
- ``containers``: each container kind's rules, dispatched by kind;
- ``walk``: the node walk, ``repeat`` and the expanded-size budget;
- ``document``: the top level, ``train:`` included.
"""

from .document import Checker, validate_document

__all__ = ["Checker", "validate_document"]
