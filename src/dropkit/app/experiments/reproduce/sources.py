"""The papers and repositories the claims cite, each written once with the version whose
tables and figures the claims name: the proceedings or journal version, and the arXiv
version where the claims' numbers were checked against one (audited 2026-12-05: CHANGELOG)."""

from __future__ import annotations

__all__ = ["SRIVASTAVA", "GAL_UCI", "GAL_README", "GAL_RNN", "ZAREMBA", "WAN", "TOMPSON",
           "LIU", "LIU_README", "LI", "PRECHELT", "SIMARD", "LAKSHMINARAYANAN", "GAL_ACTIVE",
           "KIRSCH", "LIANG", "FAN", "OVADIA", "HENDRYCKS", "LOCATOR"]

SRIVASTAVA = "Srivastava et al. 2014 (JMLR 15(56):1929-1958)"
GAL_UCI = "Gal & Ghahramani 2016 (ICML; arXiv:1506.02142v6)"
GAL_README = "the authors' DropoutUncertaintyExps README"
GAL_RNN = "Gal & Ghahramani 2016 (NeurIPS; arXiv:1512.05287v5)"
ZAREMBA = "Zaremba et al. 2014 (arXiv:1409.2329)"
WAN = "Wan et al. 2013 (ICML, PMLR 28(3):1058-1066)"
TOMPSON = "Tompson et al. 2015 (CVPR; arXiv:1411.4280)"
LIU = "Liu et al. 2023 (ICML; arXiv:2303.01500v2)"
LIU_README = "the authors' facebookresearch/dropout README"
LI = "Li et al. 2019 (CVPR; arXiv:1801.05134)"
PRECHELT = "Prechelt 1998 ('Early Stopping - But When?', LNCS 1524)"
SIMARD = "Simard et al. 2003 (ICDAR)"
LAKSHMINARAYANAN = "Lakshminarayanan, Pritzel & Blundell 2017 (NeurIPS; arXiv:1612.01474)"
GAL_ACTIVE = "Gal, Islam & Ghahramani 2017 (ICML; arXiv:1703.02910)"
KIRSCH = "Kirsch, van Amersfoort & Gal 2019 (NeurIPS; arXiv:1906.08158)"
LIANG = "Liang et al. 2021 (NeurIPS; arXiv:2106.14448)"
FAN = "Fan, Grave & Joulin 2019 (ICLR 2020; arXiv:1909.11556)"
OVADIA = "Ovadia et al. 2019 (NeurIPS; arXiv:1906.02530)"
HENDRYCKS = "Hendrycks & Gimpel 2017 (ICLR; arXiv:1610.02136)"

#: Where in a source a published statement stands: every claim's "published" names one
#: (a table, a figure, a section, the abstract, or a repository's README).
LOCATOR = r"Table \d|Fig\. \d+|Sec\. \d|abstract|README"
