"""target-basware: a Singer target that upserts master data and matching orders into Basware."""
