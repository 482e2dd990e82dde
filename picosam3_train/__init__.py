"""picosam3_train: data, model, distillation, training, evaluation, INT8 and packaging for PicoSAM3.

Entry point: ``picosam3_train <subcommand>`` (see ``picosam3_train.cli``).
"""
