"""EDA signals: recordings in memory (``recording``), the files they are read from
(``csv_files``, ``files``), and the model's classes of them (``quantize``: the companding and
rounding rule; ``codec``: µS <-> classes, the DPCM of the change per step)."""
from .codec import FALLBACK_INITIAL_EDA_US, DeltaCodec, DeltaDecoder, NormalizedCodec, codec_for
from .csv_files import load_eda, rate_from_times, read_eda_csv, read_subject_column, subject_columns, time_column
from .files import load_eda_file, read_bids_physio, read_eda_avro, read_eda_file
from .quantize import bin_edges, class_values, dequantize, quantize
from .recording import EDARecording, Normalization, resample_eda, validate_eda

__all__ = ["EDARecording", "Normalization", "validate_eda", "resample_eda", "read_eda_csv", "load_eda",
           "rate_from_times", "time_column", "subject_columns", "read_subject_column", "read_eda_avro", "read_bids_physio",
           "read_eda_file", "load_eda_file", "quantize", "dequantize", "class_values", "bin_edges",
           "DeltaCodec", "DeltaDecoder", "NormalizedCodec", "codec_for", "FALLBACK_INITIAL_EDA_US"]
