/**
 * Workspace templates: the admin declares what workspaces may run (`wsup serve --config`), operators
 * choose a template and set only the parameters it offers.
 *
 * @example
 * const set = TemplateSet.fromConfig(loadConfig('wsup.config.json', { provider: 'docker' }), providerDefaultTemplate('docker', { image: 'wsup-test:latest' }));
 * const spec = set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'debug' } } }, 'operator', 'ws-1');
 */
export { configSchema, type TemplateConfig, type WsupConfig } from './schema.ts';
export { ConfigError, formatPath, loadConfig, parseConfig } from './load.ts';
export { compileTemplate, resolveTemplate, TEMPLATE_KEY, type Template } from './template.ts';
export {
  compileConfig,
  DEFAULT_TEMPLATE,
  providerDefaultTemplate,
  SPEC_PARAMS,
  SPEC_POLICY_DEFAULTS,
  SPEC_TEMPLATE,
  templateStamp,
  TemplateSet,
  type CreateRequest,
  type TemplateStamp,
} from './set.ts';
export { AutoUpdate, autoUpdateOf, updateWorkspace, type AutoUpdateOptions, type UpdateAnswer, type UpdateTarget } from './update.ts';
export { DURATION_HINT, parseDuration } from './duration.ts';
export { canonicalJson, templateVersion } from './version.ts';
export { LOADER_ENV_KEYS, LOADER_ENV_PREFIXES, loaderEnvReason } from './loader-env.ts';
