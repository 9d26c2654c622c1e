// One job: everything DescribeJob says, its progress with rate and ETA while
// it runs, the requests its status allows, its history and its task results,
// all kept current from WatchJobs.

import { useEffect, useRef, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";

import type { JobDescriptor, Tag } from "./gen/batchops/v1/job_pb";
import {
  AclPermission,
  CannedAcl,
  ChecksumAlgorithm,
  GlacierJobTier,
  InvocationSchemaVersion,
  LegalHoldStatus,
  JobAction,
  JobStatus,
  ManifestField,
  ManifestFormat,
  MetadataDirective,
  ReportScope,
  RetentionMode,
} from "./gen/batchops/v1/job_pb";
import { binarySize, count, duration, isTerminal, jobs, problem, when } from "./api";
import { Item, LiveIndicator, Problem, Progress, StatusBadge } from "./components";
import { HistoryView } from "./history";
import { type Connection, debounced, follow, showConnection } from "./live";
import { ReportFiles } from "./report";
import { TasksView } from "./tasks";

export type JobTab = "overview" | "history" | "tasks";

/** Tasks done at a moment, for the rate. */
interface Sample {
  at: number;
  done: number;
}

const RATE_WINDOW_MS = 60_000;

export function JobPage({
  account,
  jobId,
  tab,
  onNeedToken,
}: {
  account: string;
  jobId: string;
  tab: JobTab;
  onNeedToken: () => void;
}) {
  const [job, setJob] = useState<JobDescriptor>();
  const [error, setError] = useState("");
  const [missing, setMissing] = useState(false);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [changes, setChanges] = useState(0);
  const samples = useRef<Sample[]>([]);
  const refreshRef = useRef<() => void>(() => {});

  const sample = (done: number) => {
    const now = Date.now();
    const kept = samples.current.filter((s) => now - s.at <= RATE_WINDOW_MS);
    kept.push({ at: now, done });
    samples.current = kept;
  };

  useEffect(() => {
    const stop = new AbortController();
    setJob(undefined);
    setMissing(false);
    setError("");
    samples.current = [];
    const load = async () => {
      try {
        const described = await jobs.describeJob({ accountId: account, jobId }, { signal: stop.signal });
        if (described.job) {
          const summary = described.job.progressSummary;
          sample(Number((summary?.numberOfTasksSucceeded ?? 0n) + (summary?.numberOfTasksFailed ?? 0n)));
          setJob(described.job);
          setError("");
        }
      } catch (failure) {
        if (stop.signal.aborted) {
          return;
        }
        if (failure instanceof ConnectError && failure.code === Code.NotFound) {
          setMissing(true);
        } else if (failure instanceof ConnectError && failure.code === Code.Unauthenticated) {
          onNeedToken();
        } else {
          setError(problem(failure));
        }
      }
    };
    const refresh = debounced(() => void load(), 150);
    refreshRef.current = () => refresh(jobId);
    void load();
    follow(
      account,
      [jobId],
      {
        caughtUp: () => refresh(jobId),
        event: () => {
          refresh(jobId);
          setChanges((n) => n + 1);
        },
        progress: (progress) => {
          const summary = progress.progressSummary;
          sample(Number((summary?.numberOfTasksSucceeded ?? 0n) + (summary?.numberOfTasksFailed ?? 0n)));
          setJob((current) =>
            current ? ({ ...current, status: progress.status, progressSummary: summary } as JobDescriptor) : current,
          );
        },
        connection: showConnection(setConnection, onNeedToken),
        refused: setError,
      },
      stop.signal,
    );
    return () => stop.abort();
  }, [account, jobId]);

  if (missing) {
    return (
      <section>
        <h1>Job not found</h1>
        <p>
          Account {account} has no job <code>{jobId}</code>. <a href="#/jobs">Back to the jobs</a>.
        </p>
      </section>
    );
  }
  if (!job) {
    return (
      <section>
        <h1>Job {jobId.slice(0, 8)}</h1>
        <Problem message={error} />
        {!error && <p class="muted">Loading…</p>}
      </section>
    );
  }
  const base = `#/jobs/${job.jobId}`;
  const tabs: [JobTab, string, string][] = [
    ["overview", "Overview", base],
    ["history", "History", `${base}/history`],
    ["tasks", "Task results", `${base}/tasks`],
  ];
  return (
    <section aria-labelledby="job-title">
      <p class="crumbs">
        <a href="#/jobs">Jobs</a> /
      </p>
      <div class="page-head">
        <h1 id="job-title">
          {job.description || "Job"} <code class="job-id">{job.jobId}</code>
        </h1>
        <StatusBadge status={job.status} />
        <LiveIndicator state={connection} />
      </div>
      <nav class="tabs" aria-label="Job sections">
        {tabs.map(([name, label, href]) => (
          <a href={href} aria-current={tab === name ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      <Problem message={error} />
      {tab === "overview" && (
        <Overview
          account={account}
          job={job}
          samples={samples.current}
          onChanged={(known) => {
            if (known) {
              setJob((current) => (current ? ({ ...current, ...known } as JobDescriptor) : current));
            }
            refreshRef.current();
          }}
        />
      )}
      {tab === "history" && <HistoryView account={account} jobId={job.jobId} changes={changes} />}
      {tab === "tasks" && <TasksView account={account} jobId={job.jobId} />}
    </section>
  );
}

/** Asks the page to describe the job again, showing what is `known` of the
 * change (from the server's own acceptance) until the answer comes. */
type Changed = (known?: Partial<JobDescriptor>) => void;

function Overview({
  account,
  job,
  samples,
  onChanged,
}: {
  account: string;
  job: JobDescriptor;
  samples: Sample[];
  onChanged: Changed;
}) {
  const summary = job.progressSummary;
  const total = Number(summary?.totalNumberOfTasks ?? 0n);
  const done = Number((summary?.numberOfTasksSucceeded ?? 0n) + (summary?.numberOfTasksFailed ?? 0n));
  const active = Number(summary?.timers?.elapsedTimeInActiveSeconds ?? 0n);
  let rate = 0;
  if (samples.length >= 2) {
    const first = samples[0];
    const last = samples[samples.length - 1];
    if (last.at > first.at) {
      rate = ((last.done - first.done) * 1000) / (last.at - first.at);
    }
  }
  if (rate <= 0 && active > 0) {
    rate = done / active;
  }
  const running = job.status === JobStatus.ACTIVE;
  return (
    <>
      {job.dryRun ? (
        <DryRun job={job} />
      ) : (
        <div class="panel">
          <h2>Progress</h2>
          <Progress summary={summary} />
          <p class="facts">
            {count(summary?.numberOfTasksSucceeded ?? 0n)} succeeded · {count(summary?.numberOfTasksFailed ?? 0n)} failed ·{" "}
            {count(total)} total · active for {duration(active)}
            {running && rate > 0 && (
              <>
                {" "}
                · <span data-testid="rate">{rate.toFixed(rate < 10 ? 1 : 0)} tasks/s</span> · about{" "}
                <span data-testid="eta">{duration((total - done) / rate)}</span> left
              </>
            )}
          </p>
        </div>
      )}
      <Actions account={account} job={job} onChanged={onChanged} />
      {job.failureReasons.length > 0 && (
        <div class="panel">
          <h2>Failure reasons</h2>
          <ul class="reasons">
            {job.failureReasons.map((reason) => (
              <li>
                <strong>{reason.failureCode}</strong>: {reason.failureReason}
              </li>
            ))}
          </ul>
        </div>
      )}
      {(job.errorSummaries.length > 0 || job.otherCodesFailedTasks > 0n) && (
        <div class="panel">
          <h2>Failed tasks by error code</h2>
          <table class="errors">
            <thead>
              <tr>
                <th scope="col">Error code</th>
                <th scope="col">Tasks</th>
                <th scope="col">First of them</th>
              </tr>
            </thead>
            <tbody>
              {job.errorSummaries.map((code) => (
                <tr>
                  <th scope="row">{code.errorCode || "—"}</th>
                  <td>{count(code.failedTasks)}</td>
                  <td>
                    <ul class="samples">
                      {code.samples.map((sample) => (
                        <li>
                          task {String(sample.taskNumber)}{" "}
                          <code>
                            {sample.bucket}/{sample.key}
                            {sample.versionId ? ` (${sample.versionId})` : ""}
                          </code>
                          : {sample.message}
                        </li>
                      ))}
                    </ul>
                  </td>
                </tr>
              ))}
              {job.otherCodesFailedTasks > 0n && (
                <tr>
                  <th scope="row">other codes</th>
                  <td>{count(job.otherCodesFailedTasks)}</td>
                  <td />
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
      {job.reportLocation && (
        <ReportFiles
          account={account}
          jobId={job.jobId}
          bucket={job.reportLocation.bucket}
          manifestKey={job.reportLocation.manifestKey}
        />
      )}
      <Details job={job} />
      <TagEditor account={account} job={job} onChanged={onChanged} />
    </>
  );
}

function Actions({ account, job, onChanged }: { account: string; job: JobDescriptor; onChanged: () => void }) {
  const allowed = (action: JobAction) => job.allowedActions.includes(action);
  const [reason, setReason] = useState("");
  const [priority, setPriority] = useState(String(job.priority));
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState("");
  const [refusal, setRefusal] = useState("");
  useEffect(() => setPriority(String(job.priority)), [job.priority]);

  const act = async (what: string, call: () => Promise<unknown>) => {
    setBusy(true);
    setOutcome("");
    setRefusal("");
    try {
      await call();
      setOutcome(what);
      onChanged();
    } catch (failure) {
      setRefusal(problem(failure));
      onChanged();
    } finally {
      setBusy(false);
    }
  };
  const ids = { accountId: account, jobId: job.jobId };
  const canConfirm = allowed(JobAction.CONFIRM);
  const canCancel = allowed(JobAction.CANCEL);
  const canPrioritise = allowed(JobAction.UPDATE_PRIORITY);
  return (
    <div class="panel actions">
      <h2>Actions</h2>
      {isTerminal(job.status) && <p class="muted">This job has ended: only its tags can still change.</p>}
      <div class="action-row">
        <button
          type="button"
          class="primary"
          disabled={!canConfirm || busy}
          title={canConfirm ? undefined : "Only a Suspended job can be confirmed"}
          onClick={() =>
            act("Confirmed: the job is Ready to run.", () =>
              jobs.updateJobStatus({
                ...ids,
                requestedJobStatus: JobStatus.READY,
                statusUpdateReason: reason,
              }),
            )
          }
        >
          Confirm and run
        </button>
      </div>
      <div class="action-row">
        <label>
          Reason (optional)
          <input
            type="text"
            maxLength={256}
            value={reason}
            placeholder="Why you confirm or cancel"
            onInput={(event) => setReason((event.target as HTMLInputElement).value)}
          />
        </label>
        <button
          type="button"
          class="danger"
          disabled={!canCancel || busy}
          title={canCancel ? undefined : "This job can no longer be cancelled"}
          onClick={() =>
            act("Cancellation requested.", () =>
              jobs.updateJobStatus({
                ...ids,
                requestedJobStatus: JobStatus.CANCELLED,
                statusUpdateReason: reason,
              }),
            )
          }
        >
          Cancel job
        </button>
      </div>
      <form
        class="action-row"
        onSubmit={(event) => {
          event.preventDefault();
          act(`Priority set to ${priority}.`, () =>
            jobs.updateJobPriority({ ...ids, priority: Number.parseInt(priority, 10) }),
          );
        }}
      >
        <label>
          Priority
          <input
            type="number"
            min={0}
            max={2147483647}
            step={1}
            required
            value={priority}
            disabled={!canPrioritise}
            onInput={(event) => setPriority((event.target as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" disabled={!canPrioritise || busy}>
          Set priority
        </button>
      </form>
      {outcome && (
        <p class="outcome" role="status">
          {outcome}
        </p>
      )}
      <Problem message={refusal && `The server refused: ${refusal}`} />
    </div>
  );
}

const FORMATS: Record<ManifestFormat, string> = {
  [ManifestFormat.UNSPECIFIED]: "—",
  [ManifestFormat.S3_BATCH_OPERATIONS_CSV_20180820]: "S3BatchOperations_CSV_20180820",
  [ManifestFormat.S3_INVENTORY_REPORT_CSV_20161130]: "S3InventoryReport_CSV_20161130",
};

const enumName = (names: Record<number, string>, value: number) =>
  (names[value] ?? "UNSPECIFIED").toString().replaceAll("_", " ");

function operationText(job: JobDescriptor): [string, string][] {
  const operation = job.operation?.operation;
  switch (operation?.case) {
    case "computeObjectChecksum":
      return [
        ["Operation", "Compute object checksum"],
        ["Algorithm", enumName(ChecksumAlgorithm, operation.value.algorithm)],
      ];
    case "deleteObject":
      return [["Operation", "Delete object"]];
    case "putObjectCopy": {
      const copy = operation.value;
      const rows: [string, string][] = [
        ["Operation", "Copy object"],
        ["Copy to", `s3://${copy.targetBucket}/${copy.targetKeyPrefix}…`],
        ["Metadata", enumName(MetadataDirective, copy.metadataDirective)],
      ];
      if (copy.newObjectMetadata) {
        const meta = copy.newObjectMetadata;
        const user = Object.entries(meta.userMetadata).map(([k, v]) => `${k}=${v}`);
        rows.push(["New metadata", [meta.contentType, meta.cacheControl, ...user].filter(Boolean).join(", ") || "—"]);
      }
      return rows;
    }
    case "invoke": {
      const invoke = operation.value;
      const args = Object.entries(invoke.userArguments).map(([k, v]) => `${k}=${v}`);
      return [
        ["Operation", "Invoke"],
        ["Function", invoke.functionArn || "—"],
        ["Endpoint", invoke.endpointUrl || "—"],
        ["Schema", enumName(InvocationSchemaVersion, invoke.invocationSchemaVersion)],
        ["User arguments", args.join(", ") || "—"],
      ];
    }
    case "putObjectTagging":
      return [
        ["Operation", "Replace object tags"],
        ["Tags", operation.value.tags.map((t) => `${t.key}=${t.value}`).join(", ") || "none (removes all)"],
      ];
    case "deleteObjectTagging":
      return [["Operation", "Delete object tags"]];
    case "putObjectLegalHold":
      return [
        ["Operation", "Object Lock legal hold"],
        ["Legal hold", enumName(LegalHoldStatus, operation.value.status)],
      ];
    case "putObjectRetention": {
      const retention = operation.value;
      return [
        ["Operation", "Object Lock retention"],
        ["Mode", enumName(RetentionMode, retention.mode)],
        ["Retain until", retention.retainUntil ? when(retention.retainUntil) : "—"],
        ["Bypass governance", retention.bypassGovernanceRetention ? "yes" : "no"],
      ];
    }
    case "putObjectAcl": {
      const acl = operation.value.acl;
      if (acl.case === "cannedAcl") {
        return [
          ["Operation", "Object ACL"],
          ["Canned ACL", enumName(CannedAcl, acl.value)],
        ];
      }
      const grants = (acl.value?.grants ?? []).map(
        (g) => `${g.grantee?.grantee.value ?? "?"}: ${enumName(AclPermission, g.permission)}`,
      );
      return [
        ["Operation", "Object ACL"],
        ["Owner", acl.value?.ownerId ?? "—"],
        ["Grants", grants.join(", ") || "none"],
      ];
    }
    case "initiateRestoreObject":
      return [
        ["Operation", "Restore from archive"],
        ["Days", String(operation.value.expirationInDays)],
        ["Tier", enumName(GlacierJobTier, operation.value.glacierJobTier)],
      ];
    default:
      return [["Operation", "—"]];
  }
}

function Details({ job }: { job: JobDescriptor }) {
  const manifest = job.manifest;
  const generator = job.manifestGenerator;
  const report = job.report;
  const threshold = job.failureThreshold;
  return (
    <div class="panel">
      <h2>Details</h2>
      <dl class="details">
        <Item term="Job ID">
          <code>{job.jobId}</code>
        </Item>
        <Item term="Account">{job.accountId}</Item>
        <Item term="Description">{job.description || "—"}</Item>
        <Item term="Priority">{job.priority}</Item>
        <Item term="Created">{when(job.createTime)}</Item>
        {job.suspendedTime && <Item term="Suspended">{when(job.suspendedTime)}</Item>}
        {job.suspendedCause && <Item term="Suspended cause">{job.suspendedCause}</Item>}
        <Item term="Terminated">{when(job.terminationTime)}</Item>
        <Item term="Status update reason">{job.statusUpdateReason || "—"}</Item>
        <Item term="Confirmation required">{job.confirmationRequired ? "Yes" : "No"}</Item>
        {job.dryRun && <Item term="Dry run">Yes: the objects are counted, nothing runs</Item>}
        {job.notification && <Item term="Status webhook">{job.notification.endpointUrl}</Item>}
        {job.roleArn && <Item term="Role ARN">{job.roleArn}</Item>}
        {manifest && (
          <>
            <Item term="Manifest">
              <code>
                s3://{manifest.bucket}/{manifest.key}
              </code>
            </Item>
            <Item term="Manifest format">{FORMATS[manifest.format]}</Item>
            {manifest.fields.length > 0 && (
              <Item term="Manifest fields">{manifest.fields.map((f) => enumName(ManifestField, f)).join(", ")}</Item>
            )}
            {manifest.etag && <Item term="Manifest ETag">{manifest.etag}</Item>}
            {manifest.objectVersionId && <Item term="Manifest version">{manifest.objectVersionId}</Item>}
          </>
        )}
        {generator && (
          <>
            <Item term="Generated from">
              <code>
                s3://{generator.sourceBucket}/{generator.prefix}
              </code>
            </Item>
            {generator.keyNameConstraint && (
              <Item term="Key filters">
                {[
                  ...generator.keyNameConstraint.matchAnyPrefix.map((v) => `prefix ${v}`),
                  ...generator.keyNameConstraint.matchAnySuffix.map((v) => `suffix ${v}`),
                  ...generator.keyNameConstraint.matchAnySubstring.map((v) => `contains ${v}`),
                ].join(", ") || "—"}
              </Item>
            )}
            {generator.objectSizeGreaterThanBytes !== undefined && (
              <Item term="Larger than">{count(generator.objectSizeGreaterThanBytes)} bytes</Item>
            )}
            {generator.objectSizeLessThanBytes !== undefined && (
              <Item term="Smaller than">{count(generator.objectSizeLessThanBytes)} bytes</Item>
            )}
            {generator.createdAfter && <Item term="Created after">{when(generator.createdAfter)}</Item>}
            {generator.createdBefore && <Item term="Created before">{when(generator.createdBefore)}</Item>}
          </>
        )}
        {operationText(job).map(([term, value]) => (
          <Item term={term}>{value}</Item>
        ))}
        <Item term="Completion report">
          {report?.enabled
            ? `s3://${report.bucket}/${report.prefix} (${enumName(ReportScope, report.reportScope).toLowerCase()})`
            : "None"}
        </Item>
        {threshold && (
          <Item term="Failure threshold">
            more than {threshold.maxFailurePercent ?? 50}% failed after {count(threshold.minimumTasksRun ?? 1000n)}{" "}
            tasks
          </Item>
        )}
      </dl>
    </div>
  );
}

function TagEditor({ account, job, onChanged }: { account: string; job: JobDescriptor; onChanged: Changed }) {
  // The tags being edited, or null while the job's own tags are shown: a
  // draft is never overwritten by a refresh of the job.
  const [draft, setDraft] = useState<Tag[] | null>(null);
  const [message, setMessage] = useState("");
  const [refusal, setRefusal] = useState("");
  const allowed = job.allowedActions.includes(JobAction.UPDATE_TAGS);
  const tags = draft ?? job.tags;
  const change = (edit: (tags: Tag[]) => Tag[]) => setDraft((current) => edit(current ?? job.tags));
  const edit = (index: number, field: "key" | "value", value: string) =>
    change((tags) => tags.map((tag, i) => (i === index ? ({ ...tag, [field]: value } as Tag) : tag)));
  const save = async (replacement: Tag[]) => {
    setMessage("");
    setRefusal("");
    try {
      if (replacement.length === 0) {
        await jobs.deleteJobTagging({ accountId: account, jobId: job.jobId });
      } else {
        await jobs.putJobTagging({
          accountId: account,
          jobId: job.jobId,
          tags: replacement.map(({ key, value }) => ({ key, value })),
        });
      }
      setDraft(null);
      setMessage("Tags saved.");
      onChanged({ tags: replacement });
    } catch (failure) {
      setRefusal(problem(failure));
    }
  };
  return (
    <form
      class="panel"
      onSubmit={(event) => {
        event.preventDefault();
        void save(tags.filter((tag) => tag.key !== ""));
      }}
    >
      <h2>Tags</h2>
      {tags.length === 0 && <p class="muted">No tags.</p>}
      {tags.map((tag, index) => (
        <div class="tag-row">
          <label>
            Key
            <input
              type="text"
              value={tag.key}
              maxLength={128}
              disabled={!allowed}
              onInput={(event) => edit(index, "key", (event.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            Value
            <input
              type="text"
              value={tag.value}
              maxLength={256}
              disabled={!allowed}
              onInput={(event) => edit(index, "value", (event.target as HTMLInputElement).value)}
            />
          </label>
          <button
            type="button"
            disabled={!allowed}
            aria-label={`Remove tag ${tag.key}`}
            onClick={() => change((tags) => tags.filter((_, i) => i !== index))}
          >
            Remove
          </button>
        </div>
      ))}
      <div class="action-row">
        <button
          type="button"
          disabled={!allowed || tags.length >= 50}
          onClick={() => change((tags) => [...tags, { key: "", value: "" } as Tag])}
        >
          Add tag
        </button>
        <button type="submit" class="primary" disabled={!allowed || draft === null}>
          Save tags
        </button>
      </div>
      {message && (
        <p class="outcome" role="status">
          {message}
        </p>
      )}
      <Problem message={refusal && `The server refused: ${refusal}`} />
    </form>
  );
}

/** What a dry run counted, or that it is counting: it never runs a task. */
function DryRun({ job }: { job: JobDescriptor }) {
  const summary = job.progressSummary;
  const bytes = summary?.totalObjectBytes;
  let text: string;
  if (job.status === JobStatus.DRY_RUN_COMPLETE) {
    const size =
      bytes === undefined ? "size unknown (the manifest gives no sizes)" : `${count(bytes)} bytes (${binarySize(bytes)})`;
    text = `${count(summary?.totalNumberOfTasks ?? 0n)} objects, ${size}: nothing ran and no object was touched.`;
  } else if (isTerminal(job.status)) {
    text = "The dry run ended before counting; nothing ran.";
  } else {
    text = "Counting the objects; nothing will run.";
  }
  return (
    <div class="panel">
      <h2>Dry run</h2>
      <p class="facts" data-testid="dry-run">
        {text}
      </p>
    </div>
  );
}
