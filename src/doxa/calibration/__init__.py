"""Calibration: confidence read as the probability that a record is right.

`features` describes a record, `profile` maps those features to a probability (plain JSON,
applied without any fitting library), `apply` gives a model its calibrated view,
`reliability` scores confidences against outcomes, and `outcomes` keeps the live counts.
Fitting a profile lives with the eval harness (`doxa.eval.calibrate`), which has the labels.
"""
