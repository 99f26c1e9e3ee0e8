"""What the synthetic datasets' appearance configs share: a JSON round trip for manifests."""

from __future__ import annotations

from dataclasses import asdict, fields


class JsonConfig:
    """Mixin for a frozen dataclass of numbers and tuples that a zoo manifest records."""

    def to_dict(self) -> dict:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> JsonConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: keys that are not fields of this config.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{cls.__name__} has no fields {unknown}; fields: {names}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
