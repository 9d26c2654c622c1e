// The object-store side of the example. The server's local object store is a
// directory in which each first-level subdirectory is a bucket and an object's
// key is its path below that, so this example writes the input objects and
// reads the completion report with plain file-system calls.

import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';

/** The path of object `bucket`/`key` in the store at `objectsDir`. */
function objectPath(objectsDir: string, bucket: string, key: string): string {
  return path.join(objectsDir, bucket, ...key.split('/'));
}

/**
 * URL-encodes a key for a manifest, one path segment at a time so that the
 * slashes stay readable: `2024/city at night.jpg` becomes
 * `2024/city%20at%20night.jpg`. The server decodes every `%XX`.
 */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/**
 * Writes a few small objects into `bucket` and a CSV manifest (no header,
 * `bucket,url-encoded key` per line) listing them. Returns the manifest's key.
 */
export async function writeSampleObjects(
  objectsDir: string,
  bucket: string,
  keys: readonly string[],
): Promise<string> {
  for (const key of keys) {
    const file = objectPath(objectsDir, bucket, key);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `pretend these are the bytes of ${key}\n`);
  }
  const manifestKey = 'manifest.csv';
  const manifest = keys.map((key) => `${bucket},${encodeKey(key)}\n`).join('');
  await writeFile(objectPath(objectsDir, bucket, manifestKey), manifest);
  return manifestKey;
}

/** One CSV file of a completion report, as its manifest.json lists it. */
export interface ReportFile {
  Bucket: string;
  Key: string;
  /** The hex MD5 of the file's bytes. */
  MD5Checksum: string;
  /** "succeeded" or "failed": which tasks the file lists. */
  TaskExecutionStatus: string;
}

/** A completion report's manifest.json, in AWS's Report_CSV_20180820 format. */
export interface ReportManifest {
  Format: 'Report_CSV_20180820';
  Results: ReportFile[];
}

/** Checks, at run time, that parsed JSON has the shape of a ReportManifest. */
function isReportManifest(value: unknown): value is ReportManifest {
  if (typeof value !== 'object' || value === null) return false;
  const { Format, Results } = value as Record<string, unknown>;
  return (
    Format === 'Report_CSV_20180820' &&
    Array.isArray(Results) &&
    Results.every(
      (entry: unknown) =>
        typeof entry === 'object' &&
        entry !== null &&
        ['Bucket', 'Key', 'MD5Checksum', 'TaskExecutionStatus'].every(
          (field) => typeof (entry as Record<string, unknown>)[field] === 'string',
        ),
    )
  );
}

/** Reads and validates the report manifest at `bucket`/`key`. */
export async function readReportManifest(
  objectsDir: string,
  bucket: string,
  key: string,
): Promise<ReportManifest> {
  let text: string;
  try {
    text = await readFile(objectPath(objectsDir, bucket, key), 'utf8');
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') {
      throw new Error(
        `${bucket}/${key} is not under ${objectsDir}: is --objects the server's --object-store?`,
      );
    }
    throw error;
  }
  const value: unknown = JSON.parse(text);
  if (!isReportManifest(value)) {
    throw new Error(`${bucket}/${key} is not a Report_CSV_20180820 manifest`);
  }
  return value;
}

/**
 * Reads one report CSV file and checks its bytes against the MD5 that the
 * manifest lists; a mismatch means the file was changed after it was written.
 */
export async function readReportFile(objectsDir: string, file: ReportFile): Promise<string> {
  const content = await readFile(objectPath(objectsDir, file.Bucket, file.Key));
  const md5 = createHash('md5').update(content).digest('hex');
  if (md5 !== file.MD5Checksum.toLowerCase()) {
    throw new Error(
      `${file.Bucket}/${file.Key}: MD5 is ${md5} but the manifest says ${file.MD5Checksum}`,
    );
  }
  return content.toString('utf8');
}

/**
 * Splits CSV text into its records (rows), each as written. A newline inside
 * a quoted field (RFC 4180) does not end a record, so a result message with a
 * line break still counts as one row.
 */
export function csvRecords(text: string): string[] {
  const records: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"') {
      quoted = !quoted; // a doubled quote ("") toggles twice: no change
    } else if (char === '\n' && !quoted) {
      records.push(text.slice(start, i).replace(/\r$/, ''));
      start = i + 1;
    }
  }
  if (start < text.length) records.push(text.slice(start));
  return records;
}
