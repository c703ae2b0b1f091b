"""Generated EDA in the tools EDA researchers use: a NeuroKit2 ``signals, info`` for one sample
(``neurokit``). NeuroKit2's EDA pipeline runs at the model's 4 Hz: its cleaning leaves a 4 Hz
signal as it is, its phasic component (``EDA_Phasic``, high-pass) is this library's
``metrics.phasic`` to the bit, and its SCRs of 0.05 µS or more are among ``metrics.find_scrs``'
with the same onsets and amplitudes (``find_scrs`` keeps every SCR of that height; NeuroKit
also drops those under a tenth of the recording's largest)."""
from __future__ import annotations

from ..extras import require

__all__ = ["neurokit"]


def neurokit(result, sample: int = 0):
    """NeuroKit2's ``eda_process`` of sample ``sample`` of a ``GeneratedEDA``: ``(signals, info)``
    (``EDA_Raw``, ``EDA_Clean``, ``EDA_Tonic``, ``EDA_Phasic``, ``SCR_*``; ``info["SCR_Onsets"]``
    are step indices at ``info["sampling_rate"]``). Needs ``pip install 'edanet[neurokit]'``."""
    nk = require("neurokit2", "neurokit", "edanet.neurokit (NeuroKit2's EDA pipeline)")
    values = result.values
    if not 0 <= sample < values.shape[0]:
        raise ValueError(f"sample must lie in [0, {values.shape[0]}) (the result's samples), got {sample}")
    rate = float(result.sample_rate)
    if rate != int(rate):
        raise ValueError(f"NeuroKit needs a whole sampling rate, and this result is at {rate:g} Hz")
    return nk.eda_process(values[sample], sampling_rate=int(rate))
