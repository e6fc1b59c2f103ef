from tests.campaigns.conftest import run  # noqa: F401  (the engine-cycle fixture)
