"""The policies every stage asset shares, decided here and nowhere else: the domain partition,
the stage-table IO manager, the database pool, the kinds the UI shows and the retry policy of
the stages that reach the network."""

import dagster as dg

from facerec_pipeline.defs.partitions import domain_partitions

# Assets that write the database share this pool, so SQLite sees one writer at a time even under
# the multiprocess executor (the limit is set in dagster.yaml).
DATABASE_POOL = "facerec_db"

# Wikidata, Commons and the paid search: a stage that failed on the network is tried again.
NETWORK_RETRY = dg.RetryPolicy(
    max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def stage_asset(*, reaches_network: bool = False, stores_table: bool = True, **asset_kwargs):
    """The decorator of every stage asset: partitioned by domain, writing the database through
    the shared pool; a stage table (a DataFrame) stored by the stage-table IO manager, and the
    network retry policy on the stages that download."""
    policy: dict = {
        "partitions_def": domain_partitions,
        "pool": DATABASE_POOL,
        "kinds": {"python", "sqlite"} if stores_table else {"python"},
    }
    if stores_table:
        policy["io_manager_key"] = "stage_tables"
    if reaches_network:
        policy["retry_policy"] = NETWORK_RETRY
    return dg.asset(**policy, **asset_kwargs)
