-- A dry run ends in DryRunComplete, a fourth terminal status: the index of
-- unfinished jobs leaves it out like the other three.
DROP INDEX jobs_unfinished;
CREATE INDEX jobs_unfinished ON jobs (status, priority DESC, created_at)
    WHERE status NOT IN ('Complete', 'Cancelled', 'Failed', 'DryRunComplete');
