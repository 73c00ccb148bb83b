"""The seed drafts the losses implement, cited by title (they are unpublished: no venue, no DOI)."""

from __future__ import annotations

UNIREP = """
@unpublished{nguyen_unirep,
    title={UniRep: A Unified Representation Architecture for Provably Stable Multimodal Learning},
    author={Nguyen, Nguyen Anh},
    note={Draft, EraX and Gtel Mobile JSC (GMobile)}
}
"""

UNIREP_M = """
@unpublished{nguyen_unirep_m,
    title={UniRep and UniRep-M: A Single Architecture for Unified Embedding and Reranking with Hierarchical
           Matryoshka Learning},
    author={Nguyen, Nguyen Anh},
    note={Draft, EraX and Gtel Mobile JSC (GMobile)}
}
"""

VIUNIEMBED = """
@unpublished{nguyen_viuniembed,
    title={ViUniEmbed: Unified Embedding and Reranking with a Single, Calibrated Multimodal Vector},
    author={Nguyen, Nguyen Anh},
    note={Draft, EraX and Gtel Mobile JSC (GMobile)}
}
"""

VIPOLYQWEN = """
@unpublished{nguyen_vipolyqwen,
    title={viPolyQwen: Synergizing Prefix-Guided Dynamic Loss Optimization and Attention Pooling for Unified
           Multimodal Embeddings},
    author={Nguyen, Nguyen Anh},
    note={Draft, EraX and Gtel Mobile JSC (GMobile); an earlier two-page draft is titled "viPolyQwen: Unified
          Multimodal Embeddings via Prefix-Guided Dynamic Loss and Attention Pooling"}
}
"""


def cite(*entries: str) -> str:
    """The BibTeX entries one after the other, as a loss's ``citation``."""
    return "".join(entries)
