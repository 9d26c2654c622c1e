// A job's completion report: its manifest and the files it lists, each
// downloaded through GetJobReportFile (the server reads the store for the
// job's account; the browser never needs the store's credentials).

import { useEffect, useState } from "preact/hooks";

import { jobs, problem } from "./api";
import { Problem } from "./components";

interface Listed {
  key: string;
  status: string;
  md5: string;
}

/** Every byte of one report file. */
async function read(account: string, jobId: string, key: string, signal?: AbortSignal): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const message of jobs.getJobReportFile({ accountId: account, jobId, key }, { signal })) {
    chunks.push(message.data);
  }
  return chunks;
}

const basename = (key: string) => key.slice(key.lastIndexOf("/") + 1);

export function ReportFiles({
  account,
  jobId,
  bucket,
  manifestKey,
}: {
  account: string;
  jobId: string;
  bucket: string;
  manifestKey: string;
}) {
  const [files, setFiles] = useState<Listed[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    const stop = new AbortController();
    (async () => {
      try {
        const chunks = await read(account, jobId, manifestKey, stop.signal);
        const text = await new Blob(chunks as BlobPart[]).text();
        const manifest = JSON.parse(text) as {
          Results?: { Key: string; TaskExecutionStatus: string; MD5Checksum: string }[];
        };
        setFiles(
          (manifest.Results ?? []).map((entry) => ({
            key: entry.Key,
            status: entry.TaskExecutionStatus,
            md5: entry.MD5Checksum,
          })),
        );
        setError("");
      } catch (failure) {
        if (!stop.signal.aborted) {
          setError(problem(failure));
        }
      }
    })();
    return () => stop.abort();
  }, [account, jobId, manifestKey]);

  const download = async (key: string, type: string) => {
    try {
      const chunks = await read(account, jobId, key);
      const url = URL.createObjectURL(new Blob(chunks as BlobPart[], { type }));
      const link = document.createElement("a");
      link.href = url;
      link.download = basename(key);
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setError("");
    } catch (failure) {
      setError(problem(failure));
    }
  };

  return (
    <div class="panel">
      <h2>Completion report</h2>
      <p class="muted">
        <code>
          s3://{bucket}/{manifestKey}
        </code>
      </p>
      <Problem message={error} />
      <ul class="report-files">
        <li>
          <button type="button" class="link" onClick={() => download(manifestKey, "application/json")}>
            manifest.json
          </button>
        </li>
        {files.map((file) => (
          <li key={file.key}>
            <button type="button" class="link" onClick={() => download(file.key, "text/csv")}>
              {basename(file.key)}
            </button>{" "}
            <span class="muted">
              {file.status} tasks · MD5 {file.md5}
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}
