-- Memory writes (`memory_upsert` jobs) are claimed by the memory writer, in
-- groups, and every other job by the job workers. Each claim gets an index
-- that holds only what it may take, so a backlog of memory writes (ChromaDB
-- down, or a burst of replies) is never scanned by the workers' claims, and
-- the memory writer finds its jobs without walking past everyone else's.
DROP INDEX jobs_due;
CREATE INDEX jobs_due_for_workers ON jobs (run_at)
    WHERE state IN ('queued', 'running') AND kind <> 'memory_upsert';
CREATE INDEX jobs_due_by_kind ON jobs (kind, run_at)
    WHERE state IN ('queued', 'running');
