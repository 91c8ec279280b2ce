"""The joint audio-text space of an aligned checkpoint: zero-shot classification and retrieval.

    acula calibrate --checkpoint runs/align/acula_final.pt --manifest align.csv
    acula zeroshot  --checkpoint runs/align/acula_final.pt --manifest test.csv --label-column murmur --out runs/zs
    acula retrieve  --checkpoint runs/align/acula_final.pt --manifest test.csv --out runs/ret

One module per job: `model` (the aligned model, its teacher, projections), `calibration` (the Procrustes
map), `similarity` (scores), `prompts` (class prompts; the built-in ones are data, `prompts.json`),
`space` (what zero-shot and retrieval share, configured by one `JointSpaceConfig`), `classify`
(zero-shot classification) and `retrieval`. `acula.evaluate.zeroshot` re-exports the old names.

Why a calibration: AcuLa trains with linear CKA, which compares the sample x sample Gram matrices of the
audio and text projections. CKA is unchanged when either side is rotated (any orthogonal map) or scaled, so
training leaves the audio projections aligned to the text projections only *up to* a rotation, a scale and
an offset: the raw cosine between `embed_audio(x)` and `embed_text(t)` need not mean anything. If the two
centred Grams agree up to scale, the centred projections differ by exactly such a map, so an orthogonal
Procrustes fit (with centring and an isotropic scale) on the alignment pairs recovers it, using no labels
and no test data. Scores are then cosines in the centred text space. `similarity="raw"` keeps the plain
cosine, which is the right score for InfoNCE-trained models (docs/zeroshot.md).

Nothing is imported here, so `acula calibrate` does not pay for scikit-learn and the CLI's startup stays
light; import the submodule you need.
"""
