from functools import partial

import dagster as dg

# One partition per client domain; the registry sensor and the CLI keep it in step with the
# `domains` table.
domain_partitions = dg.DynamicPartitionsDefinition(name="domain")

# Assets that write the database share this pool, so SQLite sees one writer at a time even under
# the multiprocess executor (the limit is set in dagster.yaml).
DATABASE_POOL = "facerec_db"


# The decorator every stage table asset shares: partitioned by domain, stored by the stage-table
# IO manager, writing the database through the shared pool.
stage_asset = partial(
    dg.asset,
    partitions_def=domain_partitions,
    io_manager_key="stage_tables",
    pool=DATABASE_POOL,
    kinds={"python", "sqlite"},
)
