// A new job: a manifest or a generator, one operation with its options, a
// report, priority and confirmation. The server validates it; its message
// (which names the field) is shown as it is.

import { useState } from "preact/hooks";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import type { Operation } from "./gen/batchops/v1/job_pb";
import {
  ChecksumAlgorithm,
  ComputeObjectChecksumOperationSchema,
  CannedAcl,
  DeleteObjectOperationSchema,
  DeleteObjectTaggingOperationSchema,
  GlacierJobTier,
  InitiateRestoreObjectOperationSchema,
  LegalHoldStatus,
  PutObjectAclOperationSchema,
  PutObjectLegalHoldOperationSchema,
  PutObjectRetentionOperationSchema,
  PutObjectTaggingOperationSchema,
  RetentionMode,
  InvokeOperationSchema,
  PutObjectCopyOperationSchema,
  InvocationSchemaVersion,
  ManifestFormat,
  MetadataDirective,
  ReportScope,
} from "./gen/batchops/v1/job_pb";
import type { CreateJobRequestSchema } from "./gen/batchops/v1/job_service_pb";
import { jobs, problem } from "./api";
import { Problem } from "./components";

type Source = "manifest" | "generator";
type OperationKind =
  | "checksum"
  | "copy"
  | "delete"
  | "invoke"
  | "tagging"
  | "deleteTagging"
  | "legalHold"
  | "retention"
  | "acl"
  | "restore";

const CANNED_ACLS: [CannedAcl, string][] = [
  [CannedAcl.PRIVATE, "private"],
  [CannedAcl.PUBLIC_READ, "public-read"],
  [CannedAcl.PUBLIC_READ_WRITE, "public-read-write"],
  [CannedAcl.AWS_EXEC_READ, "aws-exec-read"],
  [CannedAcl.AUTHENTICATED_READ, "authenticated-read"],
  [CannedAcl.BUCKET_OWNER_READ, "bucket-owner-read"],
  [CannedAcl.BUCKET_OWNER_FULL_CONTROL, "bucket-owner-full-control"],
];

const ALGORITHMS: [ChecksumAlgorithm, string][] = [
  [ChecksumAlgorithm.SHA256, "SHA-256"],
  [ChecksumAlgorithm.SHA1, "SHA-1"],
  [ChecksumAlgorithm.MD5, "MD5"],
  [ChecksumAlgorithm.CRC32, "CRC32"],
  [ChecksumAlgorithm.CRC32C, "CRC32C"],
  [ChecksumAlgorithm.CRC64NVME, "CRC64NVME"],
];

const list = (text: string) =>
  text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);

/** `k=v, k2=v2` as a map. */
function pairs(text: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const item of list(text)) {
    const at = item.indexOf("=");
    map[at < 0 ? item : item.slice(0, at)] = at < 0 ? "" : item.slice(at + 1);
  }
  return map;
}

export function CreatePage({ account }: { account: string }) {
  const [form, setForm] = useState({
    description: "",
    priority: "10",
    confirmation: true,
    dryRun: false,
    notificationEndpoint: "",
    source: "manifest" as Source,
    format: String(ManifestFormat.S3_BATCH_OPERATIONS_CSV_20180820),
    bucket: "",
    key: "",
    etag: "",
    versionId: "",
    sourceBucket: "",
    prefix: "",
    matchPrefix: "",
    matchSuffix: "",
    matchSubstring: "",
    operation: "checksum" as OperationKind,
    algorithm: String(ChecksumAlgorithm.SHA256),
    targetBucket: "",
    targetPrefix: "",
    directive: String(MetadataDirective.COPY),
    endpoint: "",
    functionArn: "",
    schema: String(InvocationSchemaVersion.INVOCATION_SCHEMA_VERSION_1_0),
    userArguments: "",
    objectTags: "",
    legalHold: String(LegalHoldStatus.ON),
    retentionMode: String(RetentionMode.GOVERNANCE),
    retainUntil: "",
    bypassGovernance: false,
    cannedAcl: String(CannedAcl.PRIVATE),
    restoreDays: "7",
    tier: String(GlacierJobTier.STANDARD),
    report: true,
    reportBucket: "",
    reportPrefix: "",
    reportScope: String(ReportScope.ALL_TASKS),
    tags: "",
  });
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const set = (field: keyof typeof form) => (event: Event) => {
    const target = event.target as HTMLInputElement;
    setForm({ ...form, [field]: target.type === "checkbox" ? target.checked : target.value });
  };

  const request = (): MessageInitShape<typeof CreateJobRequestSchema> => {
    const operation = (): Operation["operation"] => {
      switch (form.operation) {
        case "checksum":
          return {
            case: "computeObjectChecksum",
            value: create(ComputeObjectChecksumOperationSchema, { algorithm: Number(form.algorithm) }),
          };
        case "copy":
          return {
            case: "putObjectCopy",
            value: create(PutObjectCopyOperationSchema, {
              targetBucket: form.targetBucket,
              targetKeyPrefix: form.targetPrefix,
              metadataDirective: Number(form.directive),
            }),
          };
        case "delete":
          return { case: "deleteObject", value: create(DeleteObjectOperationSchema) };
        case "invoke":
          return {
            case: "invoke",
            value: create(InvokeOperationSchema, {
              endpointUrl: form.endpoint,
              functionArn: form.functionArn,
              invocationSchemaVersion: Number(form.schema),
              userArguments: pairs(form.userArguments),
            }),
          };
        case "tagging":
          return {
            case: "putObjectTagging",
            value: create(PutObjectTaggingOperationSchema, {
              tags: Object.entries(pairs(form.objectTags)).map(([key, value]) => ({ key, value })),
            }),
          };
        case "deleteTagging":
          return { case: "deleteObjectTagging", value: create(DeleteObjectTaggingOperationSchema) };
        case "legalHold":
          return {
            case: "putObjectLegalHold",
            value: create(PutObjectLegalHoldOperationSchema, { status: Number(form.legalHold) }),
          };
        case "retention": {
          // An unreadable date is sent as none: the server names the field.
          const until = new Date(form.retainUntil);
          return {
            case: "putObjectRetention",
            value: create(PutObjectRetentionOperationSchema, {
              mode: Number(form.retentionMode),
              retainUntil: Number.isNaN(until.getTime()) ? undefined : timestampFromDate(until),
              bypassGovernanceRetention: form.bypassGovernance,
            }),
          };
        }
        case "acl":
          return {
            case: "putObjectAcl",
            value: create(PutObjectAclOperationSchema, {
              acl: { case: "cannedAcl", value: Number(form.cannedAcl) },
            }),
          };
        case "restore":
          return {
            case: "initiateRestoreObject",
            value: create(InitiateRestoreObjectOperationSchema, {
              expirationInDays: Number.parseInt(form.restoreDays, 10) || 0,
              glacierJobTier: Number(form.tier),
            }),
          };
      }
    };
    const tags = Object.entries(pairs(form.tags)).map(([key, value]) => ({ key, value }));
    return {
      accountId: account,
      clientRequestToken: crypto.randomUUID(),
      description: form.description,
      priority: Number.parseInt(form.priority, 10),
      confirmationRequired: form.confirmation,
      dryRun: form.dryRun,
      notification: form.notificationEndpoint ? { endpointUrl: form.notificationEndpoint } : undefined,
      manifest:
        form.source === "manifest"
          ? {
              format: Number(form.format),
              bucket: form.bucket,
              key: form.key,
              etag: form.etag,
              objectVersionId: form.versionId,
            }
          : undefined,
      manifestGenerator:
        form.source === "generator"
          ? {
              sourceBucket: form.sourceBucket,
              prefix: form.prefix,
              keyNameConstraint: {
                matchAnyPrefix: list(form.matchPrefix),
                matchAnySuffix: list(form.matchSuffix),
                matchAnySubstring: list(form.matchSubstring),
              },
            }
          : undefined,
      operation: { operation: operation() },
      report: form.report
        ? {
            enabled: true,
            bucket: form.reportBucket,
            prefix: form.reportPrefix,
            reportScope: Number(form.reportScope),
          }
        : { enabled: false },
      tags,
    } satisfies MessageInitShape<typeof CreateJobRequestSchema>;
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      const created = await jobs.createJob(request());
      window.location.hash = `#/jobs/${created.jobId}`;
    } catch (failure) {
      setError(problem(failure));
    } finally {
      setBusy(false);
    }
  };

  const text = (label: string, field: keyof typeof form, extra: Record<string, unknown> = {}) => (
    <label>
      {label}
      <input type="text" name={field} value={form[field] as string} onInput={set(field)} {...extra} />
    </label>
  );

  return (
    <section aria-labelledby="create-title">
      <p class="crumbs">
        <a href="#/jobs">Jobs</a> /
      </p>
      <h1 id="create-title">Create a job in account {account}</h1>
      <form class="create" onSubmit={submit} noValidate>
        <fieldset>
          <legend>Objects</legend>
          <label class="inline">
            <input
              type="radio"
              name="source"
              checked={form.source === "manifest"}
              onChange={() => setForm({ ...form, source: "manifest" })}
            />{" "}
            A manifest object
          </label>
          <label class="inline">
            <input
              type="radio"
              name="source"
              checked={form.source === "generator"}
              onChange={() => setForm({ ...form, source: "generator" })}
            />{" "}
            Every object under a prefix
          </label>
          {form.source === "manifest" ? (
            <div class="grid">
              <label>
                Format
                <select name="format" value={form.format} onChange={set("format")}>
                  <option value={ManifestFormat.S3_BATCH_OPERATIONS_CSV_20180820}>CSV (bucket,key[,version])</option>
                  <option value={ManifestFormat.S3_INVENTORY_REPORT_CSV_20161130}>S3 Inventory manifest.json</option>
                </select>
              </label>
              {text("Bucket", "bucket", { required: true, placeholder: "photos" })}
              {text("Key", "key", { required: true, placeholder: "manifest.csv" })}
              {text("ETag (optional)", "etag")}
              {text("Version id (optional)", "versionId")}
            </div>
          ) : (
            <div class="grid">
              {text("Source bucket", "sourceBucket", { required: true })}
              {text("Prefix (optional)", "prefix")}
              {text("Keys starting with (comma-separated)", "matchPrefix")}
              {text("Keys ending with", "matchSuffix")}
              {text("Keys containing", "matchSubstring")}
            </div>
          )}
        </fieldset>
        <fieldset>
          <legend>Operation</legend>
          <label>
            Operation
            <select name="operation" value={form.operation} onChange={set("operation")}>
              <option value="checksum">Compute checksum</option>
              <option value="copy">Copy</option>
              <option value="delete">Delete</option>
              <option value="invoke">Invoke (Lambda-style endpoint)</option>
              <optgroup label="S3 object stores only">
                <option value="tagging">Replace object tags</option>
                <option value="deleteTagging">Delete object tags</option>
                <option value="legalHold">Object Lock legal hold</option>
                <option value="retention">Object Lock retention</option>
                <option value="acl">Object ACL</option>
                <option value="restore">Restore from archive</option>
              </optgroup>
            </select>
          </label>
          {form.operation === "tagging" && text("Tags (k=v, …; at most 10; none removes all)", "objectTags")}
          {form.operation === "legalHold" && (
            <label>
              Legal hold
              <select name="legalHold" value={form.legalHold} onChange={set("legalHold")}>
                <option value={LegalHoldStatus.ON}>On</option>
                <option value={LegalHoldStatus.OFF}>Off</option>
              </select>
            </label>
          )}
          {form.operation === "retention" && (
            <div class="grid">
              <label>
                Mode
                <select name="retentionMode" value={form.retentionMode} onChange={set("retentionMode")}>
                  <option value={RetentionMode.GOVERNANCE}>Governance</option>
                  <option value={RetentionMode.COMPLIANCE}>Compliance</option>
                </select>
              </label>
              <label>
                Retain until
                <input
                  type="datetime-local"
                  name="retainUntil"
                  step={1}
                  value={form.retainUntil}
                  onInput={set("retainUntil")}
                />
              </label>
              <label class="inline">
                <input
                  type="checkbox"
                  name="bypassGovernance"
                  checked={form.bypassGovernance}
                  onChange={set("bypassGovernance")}
                />{" "}
                Bypass governance retention
              </label>
            </div>
          )}
          {form.operation === "acl" && (
            <label>
              Canned ACL (an explicit policy with grants: the CLI or the API)
              <select name="cannedAcl" value={form.cannedAcl} onChange={set("cannedAcl")}>
                {CANNED_ACLS.map(([value, name]) => (
                  <option value={value}>{name}</option>
                ))}
              </select>
            </label>
          )}
          {form.operation === "restore" && (
            <div class="grid">
              <label>
                Days the restored copy stays
                <input type="number" name="restoreDays" min={0} value={form.restoreDays} onInput={set("restoreDays")} />
              </label>
              <label>
                Tier
                <select name="tier" value={form.tier} onChange={set("tier")}>
                  <option value={GlacierJobTier.STANDARD}>Standard</option>
                  <option value={GlacierJobTier.BULK}>Bulk</option>
                </select>
              </label>
            </div>
          )}
          {form.operation === "checksum" && (
            <label>
              Algorithm
              <select name="algorithm" value={form.algorithm} onChange={set("algorithm")}>
                {ALGORITHMS.map(([value, name]) => (
                  <option value={value}>{name}</option>
                ))}
              </select>
            </label>
          )}
          {form.operation === "copy" && (
            <div class="grid">
              {text("Target bucket", "targetBucket", { required: true })}
              {text("Target key prefix", "targetPrefix")}
              <label>
                Metadata
                <select name="directive" value={form.directive} onChange={set("directive")}>
                  <option value={MetadataDirective.COPY}>Copy</option>
                  <option value={MetadataDirective.REPLACE}>Replace</option>
                </select>
              </label>
            </div>
          )}
          {form.operation === "invoke" && (
            <div class="grid">
              {text("Endpoint URL", "endpoint", { placeholder: "http://127.0.0.1:9000/hook" })}
              {text("or function ARN", "functionArn")}
              <label>
                Schema
                <select name="schema" value={form.schema} onChange={set("schema")}>
                  <option value={InvocationSchemaVersion.INVOCATION_SCHEMA_VERSION_1_0}>1.0</option>
                  <option value={InvocationSchemaVersion.INVOCATION_SCHEMA_VERSION_2_0}>2.0</option>
                </select>
              </label>
              {text("User arguments (k=v, …; schema 2.0)", "userArguments")}
            </div>
          )}
        </fieldset>
        <fieldset>
          <legend>Completion report</legend>
          <label class="inline">
            <input type="checkbox" name="report" checked={form.report} onChange={set("report")} /> Write a completion
            report
          </label>
          {form.report && (
            <div class="grid">
              {text("Report bucket", "reportBucket", { required: true, placeholder: "reports" })}
              {text("Prefix", "reportPrefix")}
              <label>
                Tasks listed
                <select name="reportScope" value={form.reportScope} onChange={set("reportScope")}>
                  <option value={ReportScope.ALL_TASKS}>All tasks</option>
                  <option value={ReportScope.FAILED_TASKS_ONLY}>Failed tasks only</option>
                </select>
              </label>
            </div>
          )}
        </fieldset>
        <fieldset>
          <legend>Job</legend>
          <div class="grid">
            {text("Description", "description", { maxLength: 256 })}
            <label>
              Priority
              <input type="number" name="priority" min={0} value={form.priority} onInput={set("priority")} />
            </label>
            {text("Tags (k=v, …)", "tags")}
            {text("Notification endpoint (optional)", "notificationEndpoint", { placeholder: "an http(s) URL in the invoke allowlist" })}
          </div>
          <label class="inline">
            <input type="checkbox" name="confirmation" checked={form.confirmation} onChange={set("confirmation")} />{" "}
            Wait for confirmation before running (the job stops in Suspended)
          </label>
          <label class="inline">
            <input type="checkbox" name="dryRun" checked={form.dryRun} onChange={set("dryRun")} /> Dry run: only count
            the objects (and their bytes, where the listing has sizes); nothing runs and no object is touched
          </label>
        </fieldset>
        <Problem message={error && `The server refused: ${error}`} />
        <div class="action-row">
          <button type="submit" class="primary" disabled={busy}>
            {form.dryRun ? "Count objects (dry run)" : "Create job"}
          </button>
          <a href="#/jobs">Cancel</a>
        </div>
      </form>
    </section>
  );
}
