"""Survey records; the instrument library and scoring are data files and pure Python."""
