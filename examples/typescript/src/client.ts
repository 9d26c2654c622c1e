// A typed, promise-based wrapper around the batchops JobService client.
//
// @grpc/proto-loader reads the .proto files at run time and builds the client
// dynamically; the TypeScript types come from `proto-loader-gen-types`, which
// `npm run generate` runs over the same files into src/generated/. The two
// must agree on how messages are converted to JavaScript objects, so the
// options below mirror the flags of the `generate` script in package.json.

import * as path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated/job_service';
import type { CreateJobRequest } from './generated/batchops/v1/CreateJobRequest';
import type { CreateJobResponse__Output } from './generated/batchops/v1/CreateJobResponse';
import type { DescribeJobRequest } from './generated/batchops/v1/DescribeJobRequest';
import type { DescribeJobResponse__Output } from './generated/batchops/v1/DescribeJobResponse';
import type { JobDescriptor__Output } from './generated/batchops/v1/JobDescriptor';
import type { JobServiceClient } from './generated/batchops/v1/JobService';
import type { JobStatus__Output } from './generated/batchops/v1/JobStatus';
import type { UpdateJobStatusRequest } from './generated/batchops/v1/UpdateJobStatusRequest';
import type { UpdateJobStatusResponse__Output } from './generated/batchops/v1/UpdateJobStatusResponse';
import type { WatchJobsRequest } from './generated/batchops/v1/WatchJobsRequest';
import type { WatchJobsResponse__Output } from './generated/batchops/v1/WatchJobsResponse';

/** The repository's proto/ directory, seen from dist/ (or src/). */
const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');

/**
 * How proto-loader converts messages. Each option matches a flag of the
 * `generate` script, and the generated types depend on them:
 * - keepCase: field names stay snake_case, as in the .proto (`job_id`);
 * - longs: String: 64-bit integers arrive as decimal strings (`"5"`), which
 *   cannot lose precision the way JavaScript numbers can;
 * - enums: String: enum values arrive as their names (`"JOB_STATUS_READY"`);
 * - defaults: unset scalar fields arrive as their default ("", 0, false), so
 *   the `__Output` types mark them as always present;
 * - oneofs: each oneof gets a field naming its set member (`message: "event"`).
 */
const LOADER_OPTIONS: protoLoader.Options = {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Unary calls that take longer than this fail with DEADLINE_EXCEEDED. */
const UNARY_TIMEOUT_MS = 10_000;

/** A job status without its prefix, as people say it: `JOB_STATUS_READY` is "Ready". */
export function statusName(status: JobStatus__Output): string {
  const word = status.replace(/^JOB_STATUS_/, '').toLowerCase();
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/**
 * Runs one callback-style grpc-js unary call and resolves with its response.
 * `start` begins the call and hands it the callback to answer.
 */
function unary<Response>(
  start: (callback: grpc.requestCallback<Response>) => void,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    start((error, response) => {
      if (error) {
        reject(error);
      } else if (response === undefined) {
        reject(new Error('the call ended without a response'));
      } else {
        resolve(response);
      }
    });
  });
}

/** Call options with a deadline `timeoutMs` from now. */
function deadlineIn(timeoutMs: number): grpc.CallOptions {
  return { deadline: new Date(Date.now() + timeoutMs) };
}

/** The JobService methods this example uses, returning promises. */
export class BatchOpsClient {
  private readonly stub: JobServiceClient;

  /** A client of the server at `endpoint` (HOST:PORT), over plaintext HTTP/2. */
  constructor(endpoint: string) {
    const packageDefinition = protoLoader.loadSync('batchops/v1/job_service.proto', LOADER_OPTIONS);
    // loadPackageDefinition returns an untyped tree of constructors; the
    // generated ProtoGrpcType describes its shape.
    const proto = grpc.loadPackageDefinition(packageDefinition) as unknown as ProtoGrpcType;
    this.stub = new proto.batchops.v1.JobService(endpoint, grpc.credentials.createInsecure());
  }

  /** Creates a job; the same `client_request_token` returns the same job. */
  createJob(request: CreateJobRequest): Promise<CreateJobResponse__Output> {
    return unary<CreateJobResponse__Output>((done) =>
      this.stub.createJob(request, deadlineIn(UNARY_TIMEOUT_MS), done),
    );
  }

  /** Returns the whole descriptor of a job. */
  async describeJob(request: DescribeJobRequest): Promise<JobDescriptor__Output> {
    const response = await unary<DescribeJobResponse__Output>((done) =>
      this.stub.describeJob(request, deadlineIn(UNARY_TIMEOUT_MS), done),
    );
    if (!response.job) {
      throw new Error(`DescribeJob returned no job for ${request.job_id}`);
    }
    return response.job;
  }

  /** Confirms (JOB_STATUS_READY) or cancels (JOB_STATUS_CANCELLED) a job. */
  updateJobStatus(request: UpdateJobStatusRequest): Promise<UpdateJobStatusResponse__Output> {
    return unary<UpdateJobStatusResponse__Output>((done) =>
      this.stub.updateJobStatus(request, deadlineIn(UNARY_TIMEOUT_MS), done),
    );
  }

  /**
   * Opens a WatchJobs stream. It never ends on its own: the caller cancels it
   * (or the deadline, `timeoutMs` from now, does).
   */
  watchJobs(
    request: WatchJobsRequest,
    timeoutMs: number,
  ): grpc.ClientReadableStream<WatchJobsResponse__Output> {
    return this.stub.watchJobs(request, deadlineIn(timeoutMs));
  }

  /** Closes the channel. */
  close(): void {
    this.stub.close();
  }
}
