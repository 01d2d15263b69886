/**
 * src/store public surface. The supervisor and cluster import from here only.
 *
 * @example
 * import { WorkspaceStore } from '../store/index.ts';
 * const store = await WorkspaceStore.open({ url: process.env.DATABASE_URL, dataDir: '.wsup/pglite' });
 */
export { WorkspaceStore, type StoreOptions, type LoadResult } from './store.ts';
export { openEngine } from './open.ts';
export { isPostgresUrl, DEFAULT_DATA_DIR, type SqlEngine, type SqlQueryable, type SqlResult, type EngineKind, type EngineOptions } from './engine.ts';
export { migrate, MIGRATIONS, LATEST_SCHEMA_VERSION, type Migration, type MigrationResult } from './migrations.ts';
export { GroupCommitter, type GroupCommitStats, type GroupCommitOptions } from './group-commit.ts';
export { ClaimStore, type AgentView, type Claim, type ClaimAttempt } from './claims.ts';
export { PoolStore, RETIRED_OWNER, type PoolDefinition, type PoolHealth, type PoolMember, type PoolRecord } from './pools.ts';
export { TokenStore, ProcessRecordStore, hashToken, type ApiToken } from './records.ts';
export { ApiTokenRows, DEFAULT_ADMIN_LABEL, type ApiTokenRow, type NewApiToken, type TokenFingerprint } from './api-tokens.ts';
export {
  SYSTEM_OWNER,
  type CommitWrite,
  type CorruptWorkspace,
  type EventRecord,
  type EventWrite,
  type PersistedSnapshot,
  type WorkspaceRecord,
  type WorkspaceWrite,
} from './types.ts';
