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
export { DEFAULT_TEMPLATE, providerDefaultTemplate, TemplateSet, type CreateRequest } from './set.ts';
export { LOADER_ENV_KEYS, LOADER_ENV_PREFIXES, loaderEnvReason } from './loader-env.ts';
