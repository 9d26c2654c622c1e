// The batchops web console: the page's shell (account, token, navigation)
// and a hash router over the jobs list, a job and the create form.

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import "./console.css";
import { isAccountId, savedAccount, token } from "./api";
import { CreatePage } from "./create";
import { JobPage, type JobTab } from "./job";
import { JobsPage } from "./jobs";

type Route =
  | { page: "jobs" }
  | { page: "job"; jobId: string; tab: JobTab }
  | { page: "create" }
  | { page: "unknown" };

function route(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  if (path === "" || path === "jobs") {
    return { page: "jobs" };
  }
  if (path === "create") {
    return { page: "create" };
  }
  const job = /^jobs\/([0-9a-fA-F-]{36})(?:\/(history|tasks))?$/.exec(path);
  if (job) {
    return { page: "job", jobId: job[1], tab: (job[2] as JobTab | undefined) ?? "overview" };
  }
  return { page: "unknown" };
}

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

/** Asks for the API token a server started with --auth-tokens wants. */
function TokenDialog({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="token-title">
      <form
        class="dialog"
        onSubmit={(event) => {
          event.preventDefault();
          token.set(value.trim());
          onDone();
        }}
      >
        <h2 id="token-title">This server needs an API token</h2>
        <p>
          It was started with <code>--auth-tokens</code>. The token is kept in this tab only and sent with every call;
          it sees only the accounts it grants.
        </p>
        <label>
          Token
          <input
            ref={input}
            type="password"
            name="token"
            autoComplete="off"
            required
            value={value}
            onInput={(event) => setValue((event.target as HTMLInputElement).value)}
          />
        </label>
        <div class="action-row">
          <button type="submit" class="primary" disabled={value.trim() === ""}>
            Use token
          </button>
        </div>
      </form>
    </div>
  );
}

function AccountPicker({ account, onChange }: { account: string; onChange: (account: string) => void }) {
  const [value, setValue] = useState(account);
  useEffect(() => setValue(account), [account]);
  const valid = isAccountId(value);
  return (
    <form
      class="account"
      onSubmit={(event) => {
        event.preventDefault();
        if (valid) {
          onChange(value);
        }
      }}
    >
      <label>
        Account{" "}
        <input
          type="text"
          name="account"
          inputMode="numeric"
          pattern="\d{12}"
          maxLength={12}
          placeholder="12 digits"
          aria-invalid={value !== "" && !valid}
          value={value}
          onInput={(event) => setValue((event.target as HTMLInputElement).value.trim())}
        />
      </label>
      <button type="submit" disabled={!valid || value === account}>
        Open
      </button>
    </form>
  );
}

function App() {
  const hash = useHash();
  const [account, setAccount] = useState(savedAccount.get());
  const [askToken, setAskToken] = useState(false);
  const [session, setSession] = useState(0);
  const [hasToken, setHasToken] = useState(token.get() !== "");
  const current = route(hash);
  const chooseAccount = (value: string) => {
    savedAccount.set(value);
    setAccount(value);
  };
  const needToken = () => setAskToken(true);
  return (
    <>
      <header class="top">
        <a class="brand" href="#/jobs">
          batchops
        </a>
        <nav aria-label="Main">
          <a href="#/jobs" aria-current={current.page === "jobs" ? "page" : undefined}>
            Jobs
          </a>
          <a href="#/create" aria-current={current.page === "create" ? "page" : undefined}>
            Create job
          </a>
        </nav>
        <AccountPicker account={account} onChange={chooseAccount} />
        {hasToken && (
          <button
            type="button"
            class="link"
            onClick={() => {
              token.clear();
              setHasToken(false);
              setSession((n) => n + 1);
            }}
          >
            Forget token
          </button>
        )}
      </header>
      <main key={`${account}-${session}`}>
        {!isAccountId(account) ? (
          <section>
            <h1>Which account?</h1>
            <p>Enter the 12-digit account id whose jobs you want to see, above.</p>
          </section>
        ) : current.page === "jobs" ? (
          <JobsPage account={account} onNeedToken={needToken} />
        ) : current.page === "job" ? (
          <JobPage account={account} jobId={current.jobId} tab={current.tab} onNeedToken={needToken} />
        ) : current.page === "create" ? (
          <CreatePage account={account} />
        ) : (
          <section>
            <h1>Nothing here</h1>
            <p>
              <a href="#/jobs">See the jobs</a>.
            </p>
          </section>
        )}
      </main>
      {askToken && (
        <TokenDialog
          onDone={() => {
            setAskToken(false);
            setHasToken(true);
            setSession((n) => n + 1);
          }}
        />
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);
