"""An embedded synthetic cardio-respiratory corpus: heart, lung and cough recordings with metadata.

`make demo` needs audio whose clinical findings are carried by the sound itself, with metadata in
the vocabulary of the real datasets, so that the report builders, the alignment and the probes run
unchanged on real data. Nothing here reads `/work/shared`: the CirCor / ICBHI / CoughVID spellings
are copied into `vocab`.

Physiology, briefly (all times in seconds, all amplitudes relative), one module per modality: `heart`,
`lung`, `cough`; every recording then passes the recording chain (`chain`: noise, handling, hum, device
response, gain, clipping) in `rendering`. `vocab` holds the real tables' spellings, `dsp` and `breath` the
shared signal code, `corpus` generation and writing.

Labels follow the real tasks: `murmur` is CirCor's patient-level Murmur (1 Present, 0 Absent, None
Unknown), so a recording at a site outside "Murmur locations" is labelled 1 yet holds no murmur;
`crackles` / `wheezes` are per recording (ICBHI's cycle labels, any cycle); `respiratory_rate` is
the mean rate of the breaths actually rendered. Findings are more prevalent than in CirCor / ICBHI
(murmur ≈40 % of subjects, crackles ≈40 % and wheezes ≈30 % of lung recordings) so that a
demo-sized held-out split still has positives. `meta` values are CSV text, as the real tables spell
them ("nan" for an absent CirCor field, "" for an absent ICBHI / CoughVID one).

Each recording depends only on (seed, modality, subject index, location index), so generation is
order-independent and can be parallelised; `render(rec, clean=True)` re-renders the same physiology
without the nuisance chain, which the tests use to check that findings are really in the signal.
"""

from .breath import _breath_cycles, _breath_envelopes, _expiration_length  # noqa: F401  (tests use them)
from .chain import DEVICE_PROFILES  # noqa: F401
from .corpus import build, generate, manifest_row, write_corpus, write_wav  # noqa: F401
from .heart import _PITCH_HZ  # noqa: F401
from .recording import GENERATOR_VERSION, SyntheticRecording  # noqa: F401
from .rendering import render, render_stems  # noqa: F401
from .vocab import (CIRCOR_COLUMNS, COUGHVID_COLUMNS, DATASETS, HEART_EXTRA_COLUMNS, HEART_LOCATIONS,  # noqa: F401
                    ICBHI_COLUMNS, ICBHI_EQUIPMENT, ICBHI_LOCATIONS, LABEL_COLUMNS, LUNG_EXTRA_COLUMNS,
                    MANIFEST_COLUMNS, NAN)
