"""WSOL metrics (MaxBoxAcc v1/v2, PxAP, Top-k / GT-known Loc) and their evaluators."""
