/**
 * Environment keys that change how a runtime finds or loads code. A workspace's command is the admin's
 * choice; these keys would let whoever sets them run other code inside it (a preload, a search path, a
 * startup script), so an operator may never set them and a template may not offer them as parameters.
 *
 * Compared case-insensitively: Linux keys are case-sensitive, but Windows and some shells are not, and no
 * legitimate parameter needs a lower-case spelling of one of these.
 */

/** Exact keys, with what each one loads. */
export const LOADER_ENV_KEYS: Readonly<Record<string, string>> = {
  PATH: 'where every shell and exec finds programs',
  NODE_OPTIONS: 'node flags, including --require and --import of any file',
  NODE_PATH: 'node module search path',
  NODE_EXTRA_CA_CERTS: 'trusted TLS roots of node',
  PYTHONPATH: 'python module search path',
  PYTHONSTARTUP: 'python startup script',
  PYTHONHOME: 'python standard library location',
  PERL5LIB: 'perl module search path',
  PERL5OPT: 'perl flags, including -M of any module',
  PERLLIB: 'perl module search path',
  RUBYLIB: 'ruby library search path',
  RUBYOPT: 'ruby flags, including -r of any file',
  BASH_ENV: 'script sourced by every non-interactive bash',
  ENV: 'script sourced by sh and ksh',
  SHELLOPTS: 'bash options applied at startup',
  PS4: 'bash xtrace prompt, evaluated with command substitution',
  PROMPT_COMMAND: 'bash command run before each prompt',
  IFS: 'how shells split words',
  JAVA_TOOL_OPTIONS: 'JVM flags, including -javaagent',
  _JAVA_OPTIONS: 'JVM flags, including -javaagent',
  JDK_JAVA_OPTIONS: 'JVM flags, including -javaagent',
  CLASSPATH: 'JVM class search path',
  GCONV_PATH: 'glibc charset modules (loaded as shared objects)',
  HOSTALIASES: 'glibc host name aliases file',
  LOCPATH: 'glibc locale data location',
  NLSPATH: 'message catalogue location',
  MALLOC_CHECK_: 'glibc allocator debugging',
  GIT_SSH_COMMAND: 'command git runs for ssh',
  GIT_EXEC_PATH: 'where git finds its programs',
  EDITOR: 'command run by tools that open an editor',
  VISUAL: 'command run by tools that open an editor',
  PAGER: 'command run by tools that page output',
  HOME: 'where shells and tools read startup files',
  XDG_CONFIG_HOME: 'where tools read startup configuration',
  TMPDIR: 'where tools create (and may load) temporary files',
};

/** Key prefixes: every key starting with one of these. */
export const LOADER_ENV_PREFIXES: Readonly<Record<string, string>> = {
  LD_: 'the dynamic linker (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...)',
  DYLD_: 'the macOS dynamic linker',
  BASH_FUNC_: 'exported bash functions, defined at shell startup',
  NODE_: 'node runtime settings',
  PYTHON: 'python runtime settings',
  WSUP_: "wsup's own contract with the workspace (id, port, nonce, agent token)",
};

/** Why `key` is never an operator's to set, or null when it is an ordinary key. */
export function loaderEnvReason(key: string): string | null {
  const upper = key.toUpperCase();
  const exact = LOADER_ENV_KEYS[upper];
  if (exact !== undefined) return `${key} sets ${exact}`;
  for (const [prefix, what] of Object.entries(LOADER_ENV_PREFIXES)) if (upper.startsWith(prefix)) return `${key} configures ${what}`;
  return null;
}

/** What an environment key may look like at all: `=` or NUL in a key would smuggle a second assignment. */
export const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
