"""Export a parametric model to formats the ecosystem loads: NAM ``.nam`` snapshots and Proteus JSON."""

from knobcap.runtime.export.nam import (
    ExportError,
    bake_vector,
    export_nam,
    export_nam_grid,
    export_notes,
    nam_snapshot,
)
from knobcap.runtime.export.proteus import export_proteus, proteus_model

__all__ = ["ExportError", "bake_vector", "export_nam", "export_nam_grid", "export_notes", "export_proteus",
           "nam_snapshot", "proteus_model"]
