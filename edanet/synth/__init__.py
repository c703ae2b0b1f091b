"""Synthetic paired audio + EDA data with known ground truth (``edanet synth``).

Each pair is one simulated recording of ``seconds`` seconds:

* ``NAME.wav``  - float32 mono audio (default 16 kHz): a quiet background (coloured noise, sometimes
  mains hum) with procedural acoustic events every 6-20 s (onset to onset): noise bursts, tones,
  sweeps, speech-like babble, music-like chords and silence gaps (the background dips by 40 dB).
* ``NAME.csv``  - skin conductance in µS, Empatica E4 form (start time 0, rate, one value a row),
  default 4 Hz. Sample ``j`` is the conductance at time ``j / eda_sample_rate``.
* ``NAME.json`` - ground truth: every event (time, duration, kind, level_db, sharpness, attack) and
  every SCR (onset, amplitude, rise, half_recovery, kind ``"stimulus"`` with its ``event`` index or
  ``"spontaneous"``), the sample rates, the seeds, the config and the generator version.

Acoustic event descriptors
--------------------------
``level_db``  RMS level of the event's own signal over its duration, dBFS (20 log10 RMS, full scale
              = 1.0). Drawn in ``event_level_db`` (default -50..-10 dBFS); events are limited to a
              -1 dBFS peak, so the audio never clips. For a silence gap it is the RMS of the audio
              during the gap.
``sharpness`` onset sharpness in [0, 1] from the attack time ``a`` (raised-cosine fade-in):
              ``clip(log(0.5 s / a) / log(0.5 s / 0.002 s), 0, 1)`` - 1 for a 2 ms attack, 0 for
              500 ms or more; 0 for silence gaps.

The response model (``eda_from_events``)
-----------------------------------------
EDA = tonic + sum of SCRs + sensor noise, floored at ``min_eda_us``.

*Tonic level* (skin conductance level, SCL): ``L0 * exp(drift * t/60 + w(t))``, ``L0`` uniform in
``tonic_level_us`` (2-7 µS), ``drift`` uniform in ``tonic_drift_per_min`` (log-units a minute; the
slow downward drift of SCL over a resting session, Boucsein 2012 §2.3), ``w`` a natural cubic
spline through N(0, ``tonic_wander``) knots every ``tonic_wander_period_s`` seconds (slow
non-specific fluctuation). Multiplicative, so the tonic level stays positive in long runs.

*Stimulus-locked SCRs* (Dawson, Schell & Filion, "The electrodermal system", Handbook of
Psychophysiology, 2007/2017, Table 10.1: latency 1-3 s, rise time 1-3 s, half-recovery time
2-10 s, amplitude 0.2-1.0 µS; Boucsein, "Electrodermal Activity", 2nd ed. 2012). The eliciting
drive of event ``i`` grows with loudness and onset sharpness (the orienting response grows with
stimulus intensity and with the rate of change at onset - Boucsein 2012 §3.1.1; Dawson et al.):

    loud_i  = clip((level_db - loudness_floor_db) / (loudness_ceiling_db - loudness_floor_db), 0, 1)
    drive_i = loud_i * ((1 - sharpness_weight) + sharpness_weight * sharpness_i)

*Habituation* (Dawson et al.; Boucsein 2012 §3.1.1.2: response probability and amplitude fall with
repetition of the same stimulus, and partly recover with time): per event kind a repeat count
``n`` that decays with time since the last event of that kind, ``n <- n * exp(-dt /
habituation_recovery_s)``, then ``hab_i = max(habituation_floor, habituation_factor ** n)``;
``n <- n + 1`` after each event (whether it elicited an SCR or not). ``d_i = drive_i * hab_i``.

The event elicits an SCR with probability ``p_i = 1 / (1 + exp(-(d_i - response_threshold) /
response_slope))`` (defaults 0.45 and 0.1: a loud (-10 dBFS) sharp first event responds 99% of
the time, a -20 dBFS sharp one 95%, a -40 dBFS or a soft quiet one about 10%, a silence gap ~1%).
If it does:

    amplitude = clip(a_lo + (a_hi - a_lo) * d_i * J, a_lo, a_hi)      J ~ LogNormal(0, amplitude_jitter)
    latency   = lat_lo + (lat_hi - lat_lo) * clip(0.65 U + 0.35 (1 - d_i), 0, 1)   U ~ U(0, 1)
                (stronger stimuli answer sooner, Boucsein 2012; always within 1-3 s)
    rise      ~ U(rise_s),  half_recovery ~ U(half_recovery_s)
    onset     = event time + latency

*Spontaneous (non-specific) SCRs* (Dawson et al.: 1-3 a minute at rest): a rate ``r`` per minute
uniform in ``spontaneous_rate_per_min`` is drawn per recording; ``n = floor(r T/60)`` plus one
with probability of the remainder (so the count matches the rate); the recording is cut into
``n`` equal slots and one onset is drawn uniformly in each (stratified, so the realised rate stays
within the range). Amplitude ~ U(``spontaneous_amplitude_us``), rise and half-recovery as above.

*SCR shape* (``scr_shape``): a real-time-scale curve parameterized directly by rise time ``r``
and half-recovery time ``h`` in seconds (NOT NeuroKit2's ``eda_simulate`` shape, which is about
ten times too fast). Unit peak at ``t = r``, half the peak at ``t = r + h``:

    t < 0:       S = 0
    0 <= t <= r: S = u + u^2 - u^3,  u = t / r          (sigmoid rise: slope 1/r at onset, 0 at the peak)
    t > r:       S = exp(-k s^2 / (s + c)),  s = t - r,  c = r / 2,  k = ln 2 (h + c) / h^2

The decay leaves the peak with zero slope (C1 at the peak) and becomes an exponential recovery
with time constant ``h^2 / (ln 2 (h + c))`` - the bi-exponential recovery of Lim et al. 1997 and
the canonical SCR function of Bach, Flandin, Friston & Dolan 2010 (J. Neurosci. Methods 188:
Gaussian-smoothed onset, exponential recovery on a seconds scale) made exact in ``r`` and ``h``.
Overlapping SCRs add (superposition, as in Bach et al.'s linear time-invariant model).

*Sensor noise*: white Gaussian, ``noise_us`` (0.01 µS) standard deviation.

Cohorts (``write_cohort``; ``edanet synth --subjects K``): K simulated people, each with its
own traits drawn from a population (``edanet.synth.population``: level, responder or not,
lability, response size and speed, habituation, threshold, spontaneous rate; the figures and
their sources are there), all hearing the same clips: ``NAME.wav`` with one
``NAME.<subject>.csv`` per subject, ``NAME.json`` holding the events and each subject's SCRs,
and ``subjects.json`` every subject's traits. A subject id (``s<seed>-<k>``) names the same
person in every clip; a subject's traits become the response model's knobs
(``SubjectTraits.config``).

Determinism: ``synthesize_pair(seed)`` uses ``np.random.SeedSequence(seed)`` spawned into an audio
stream and an EDA stream (``meta["eda_seed"]``, so ``eda_from_events(pair.events, ..., eda_seed)``
reproduces ``pair.eda``). Pair ``i`` of a dataset made with ``seed`` uses ``pair_seed(seed, i)``
(the ``i``-th spawned child of ``SeedSequence(seed)``), independent of how many pairs are made.
"""
from .config import GENERATOR_VERSION, KINDS, SynthConfig, SynthPair
from .dataset import (pair_seed, read_ground_truth, subject_eda_seed, subject_truth, synthesize_pair, write_cohort,
                      write_dataset, write_pair)
from .population import PopulationConfig, SubjectTraits, draw_subjects, subject_id
from .response import eda_from_events, response_drive, scr_shape

__all__ = ["SynthConfig", "SynthPair", "KINDS", "GENERATOR_VERSION", "scr_shape", "response_drive",
           "eda_from_events", "synthesize_pair", "pair_seed", "write_pair", "write_dataset",
           "read_ground_truth", "write_cohort", "subject_truth", "subject_eda_seed", "PopulationConfig",
           "SubjectTraits", "draw_subjects", "subject_id"]
