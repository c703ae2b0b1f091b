"""Audio to model input frames: reading and checking audio (``audio``), causal log-mel MFCCs
(``spectral``), the loudness and onset frame features (``frame_features``), their assembly into
frames (``frames``), and the same computed as audio arrives (``stream``)."""
from .audio import (MAX_SAMPLE, as_samples, audio_array, check_file_rate, check_sample_rate, check_samples, file_info, is_pcm16,
                    load_audio, map_channels, read_blocks, read_float32, resample)
from .frame_features import compute_frame_features, loudness, onset_strength
from .frames import (MFCC_SCALE, POWER_DB_AMIN, features, mean_level_db, mfcc_frames, mfcc_frames_reference,
                     too_short, with_frame_features)
from .stream import BLOCK_SECONDS, FEATURE_BLOCK_SECONDS, FeatureStream, audio_blocks, audio_info, file_features

__all__ = ["load_audio", "audio_array", "resample", "file_info", "read_blocks", "read_float32", "is_pcm16", "as_samples",
           "check_samples", "check_sample_rate", "check_file_rate", "map_channels", "MAX_SAMPLE",
           "loudness", "onset_strength", "compute_frame_features",
           "MFCC_SCALE", "POWER_DB_AMIN", "features", "mfcc_frames", "mfcc_frames_reference", "mean_level_db",
           "too_short", "with_frame_features",
           "FeatureStream", "file_features", "audio_info", "audio_blocks", "BLOCK_SECONDS", "FEATURE_BLOCK_SECONDS"]
