// The console's one way to the server: a typed client of
// batchops.v1.JobService over gRPC-Web on the page's own origin, with the
// caller's token (when the server asks for one) on every call.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { JobService } from "./gen/batchops/v1/job_service_pb";
import { JobStatus } from "./gen/batchops/v1/job_pb";

const TOKEN_KEY = "batchops.token";
const ACCOUNT_KEY = "batchops.account";

/** The API token, kept for this browser tab only. */
export const token = {
  get: (): string => sessionStorage.getItem(TOKEN_KEY) ?? "",
  set: (value: string) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** The account last looked at, remembered across visits. */
export const savedAccount = {
  get: (): string => localStorage.getItem(ACCOUNT_KEY) ?? "",
  set: (value: string) => localStorage.setItem(ACCOUNT_KEY, value),
};

const withToken: Interceptor = (next) => async (request) => {
  const value = token.get();
  if (value) {
    request.header.set("authorization", `Bearer ${value}`);
  }
  return next(request);
};

/** JobService on the server that served this page. */
export const jobs = createClient(
  JobService,
  createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [withToken] }),
);

/** Account ids are 12 digits, as in AWS. */
export const isAccountId = (value: string) => /^\d{12}$/.test(value);

/** What went wrong with a call, for people: the server's own message. */
export function problem(error: unknown): string {
  if (error instanceof ConnectError) {
    return `${Code[error.code] ?? "Error"}: ${error.rawMessage}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Whether a call failed for want of a (valid) token. */
export const needsToken = (error: unknown) =>
  error instanceof ConnectError && error.code === Code.Unauthenticated;

/** Whether a stream ended because the page stopped it. */
export const wasAborted = (error: unknown) =>
  (error instanceof ConnectError && error.code === Code.Canceled) ||
  (error instanceof DOMException && error.name === "AbortError");

/** Every status, in lifecycle order, with the names S3 uses. */
export const STATUSES: [JobStatus, string][] = [
  [JobStatus.NEW, "New"],
  [JobStatus.PREPARING, "Preparing"],
  [JobStatus.SUSPENDED, "Suspended"],
  [JobStatus.READY, "Ready"],
  [JobStatus.ACTIVE, "Active"],
  [JobStatus.PAUSING, "Pausing"],
  [JobStatus.PAUSED, "Paused"],
  [JobStatus.COMPLETING, "Completing"],
  [JobStatus.COMPLETE, "Complete"],
  [JobStatus.CANCELLING, "Cancelling"],
  [JobStatus.CANCELLED, "Cancelled"],
  [JobStatus.FAILING, "Failing"],
  [JobStatus.FAILED, "Failed"],
  [JobStatus.DRY_RUN_COMPLETE, "DryRunComplete"],
];

export const statusName = (status: JobStatus) =>
  STATUSES.find(([value]) => value === status)?.[1] ?? "Unknown";

/** The colour family a status is shown in (its name is always shown too). */
export function statusTone(status: JobStatus): string {
  switch (status) {
    case JobStatus.COMPLETE:
      return "good";
    case JobStatus.FAILED:
    case JobStatus.FAILING:
      return "bad";
    case JobStatus.CANCELLED:
    case JobStatus.CANCELLING:
      return "muted";
    case JobStatus.SUSPENDED:
      return "attention";
    case JobStatus.DRY_RUN_COMPLETE:
      return "dry";
    case JobStatus.ACTIVE:
    case JobStatus.COMPLETING:
      return "busy";
    default:
      return "waiting";
  }
}

export const isTerminal = (status: JobStatus) =>
  status === JobStatus.COMPLETE ||
  status === JobStatus.CANCELLED ||
  status === JobStatus.FAILED ||
  status === JobStatus.DRY_RUN_COMPLETE;

/** A timestamp as local date and time, or a dash. */
export function when(value: Timestamp | undefined): string {
  if (!value) {
    return "—";
  }
  return timestampDate(value).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** A count for people: 1,234,567. */
export const count = (value: bigint | number) => Number(value).toLocaleString();

/** A size for people: 12 B, 5.5 KiB, 3.0 GiB. */
export function binarySize(value: bigint | number): string {
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let size = Number(value);
  if (size < 1024) {
    return `${size} B`;
  }
  let unit = -1;
  while (size >= 1024 && unit + 1 < units.length) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(1)} ${units[unit]}`;
}

/** A duration in seconds for people: 45 s, 12 min, 3 h 20 min. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return "—";
  }
  if (seconds < 90) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) {
    return `${minutes} min`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
