// A batchops client in TypeScript, end to end:
//
//   1. write five objects and a CSV manifest into the server's object store;
//   2. CreateJob: compute the SHA-256 of every object, with a completion report;
//   3. WatchJobs: print each status change and progress update, confirming the
//      job (UpdateJobStatus READY) when it waits in Suspended;
//   4. DescribeJob: find the completion report, check each of its CSV files
//      against the MD5 in its manifest, and print the rows.
//
// Usage: npm start -- --objects DIR [--endpoint HOST:PORT] [--account-id ID]

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { BatchOpsClient, statusName } from './client';
import { JobStatus } from './generated/batchops/v1/JobStatus';
import { csvRecords, readReportFile, readReportManifest, writeSampleObjects } from './objects';
import { watchJob } from './watch';

const USAGE = `usage: npm start -- --objects DIR [--endpoint HOST:PORT] [--account-id ID]

  --objects DIR        the server's local object-store directory (its --object-store);
                       each first-level subdirectory is a bucket
  --endpoint HOST:PORT the server's gRPC address (default 127.0.0.1:50051)
  --account-id ID      the account that owns the job (default 111122223333)`;

/** The bucket the input objects go to, and the keys written there. */
const SOURCE_BUCKET = 'photos';
const SAMPLE_KEYS = [
  '2024/beach.jpg',
  '2024/city at night.jpg',
  '2024/forest.jpg',
  '2025/lakes & mountains.jpg',
  '2025/snow.jpg',
] as const;

/** Where the completion report goes: `<bucket>/<prefix>/job-<job id>/`. */
const REPORT_BUCKET = 'reports';
const REPORT_PREFIX = 'examples';

interface Options {
  endpoint: string;
  accountId: string;
  objectsDir: string;
}

/** Reads the command line; prints the usage and exits on a mistake. */
function parseOptions(): Options {
  try {
    const { values } = parseArgs({
      options: {
        endpoint: { type: 'string', default: '127.0.0.1:50051' },
        'account-id': { type: 'string', default: '111122223333' },
        objects: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    if (values.objects === undefined) {
      throw new Error('--objects is required');
    }
    return { endpoint: values.endpoint, accountId: values['account-id'], objectsDir: values.objects };
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exit(2);
  }
}

/** Runs the example and returns the process exit code. */
async function run(options: Options, client: BatchOpsClient): Promise<number> {
  const { accountId, objectsDir } = options;

  // 1. The input: five small objects and a manifest listing them.
  const manifestKey = await writeSampleObjects(objectsDir, SOURCE_BUCKET, SAMPLE_KEYS);
  console.log(
    `wrote ${SAMPLE_KEYS.length} objects and ${SOURCE_BUCKET}/${manifestKey} under ${objectsDir}`,
  );

  // 2. The job. The request object is checked against the generated
  // CreateJobRequest type: a misspelt field or enum name does not compile.
  const { job_id: jobId } = await client.createJob({
    account_id: accountId,
    // A fresh token per run: retrying CreateJob with the same token and the
    // same request would return the same job instead of creating another.
    client_request_token: randomUUID(),
    description: 'TypeScript example: SHA-256 of the sample photos',
    operation: {
      compute_object_checksum: { algorithm: 'CHECKSUM_ALGORITHM_SHA256' },
    },
    manifest: {
      format: 'MANIFEST_FORMAT_S3_BATCH_OPERATIONS_CSV_20180820',
      bucket: SOURCE_BUCKET,
      key: manifestKey,
    },
    report: {
      enabled: true,
      bucket: REPORT_BUCKET,
      prefix: REPORT_PREFIX,
      report_scope: 'REPORT_SCOPE_ALL_TASKS',
    },
    // The job waits in Suspended until it is confirmed (done by watchJob).
    confirmation_required: true,
  });
  console.log(`created job ${jobId}`);

  // 3. Follow it to the end.
  console.log('watching it (WatchJobs from log position 0):');
  const finalStatus = await watchJob(client, accountId, jobId);
  const job = await client.describeJob({ account_id: accountId, job_id: jobId });
  const summary = job.progress_summary;
  console.log(
    `job ended ${statusName(finalStatus)}: ` +
      `${summary?.number_of_tasks_succeeded ?? 0} tasks succeeded, ` +
      `${summary?.number_of_tasks_failed ?? 0} failed`,
  );
  if (finalStatus !== JobStatus.JOB_STATUS_COMPLETE) {
    for (const reason of job.failure_reasons) {
      console.error(`  ${reason.failure_code}: ${reason.failure_reason}`);
    }
    return 1;
  }

  // 4. The completion report: manifest.json, then each CSV file it lists.
  const location = job.report_location;
  if (!location) {
    console.error('the job is Complete but has no report_location');
    return 1;
  }
  console.log(`report manifest: ${location.bucket}/${location.manifest_key}`);
  const report = await readReportManifest(objectsDir, location.bucket, location.manifest_key);
  let rows = 0;
  for (const file of report.Results) {
    const content = await readReportFile(objectsDir, file);
    console.log(`${file.Bucket}/${file.Key} (${file.TaskExecutionStatus}, MD5 ok):`);
    for (const record of csvRecords(content)) {
      console.log(`  ${record}`);
      rows++;
    }
  }
  console.log(`report rows: ${rows}`);
  return 0;
}

/** Describes an error; gRPC errors with their status code's name. */
function describeError(error: unknown): string {
  if (error instanceof Error && 'code' in error && typeof error.code === 'number') {
    const { code, details } = error as grpc.ServiceError;
    return `gRPC error ${grpc.status[code] ?? code}: ${details}`;
  }
  return error instanceof Error ? error.message : String(error);
}

async function main(): Promise<void> {
  const options = parseOptions();
  console.log(`batchops at ${options.endpoint}, account ${options.accountId}`);
  const client = new BatchOpsClient(options.endpoint);
  try {
    process.exitCode = await run(options, client);
  } catch (error) {
    console.error(describeError(error));
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

void main();
