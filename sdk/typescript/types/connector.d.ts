// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./interfaces/plugboard-connector-action-hints.d.ts" />
/// <reference path="./interfaces/plugboard-connector-ai-tools.d.ts" />
/// <reference path="./interfaces/plugboard-connector-ai-types.d.ts" />
/// <reference path="./interfaces/plugboard-connector-ai.d.ts" />
/// <reference path="./interfaces/plugboard-connector-config.d.ts" />
/// <reference path="./interfaces/plugboard-connector-emit.d.ts" />
/// <reference path="./interfaces/plugboard-connector-http.d.ts" />
/// <reference path="./interfaces/plugboard-connector-kv.d.ts" />
/// <reference path="./interfaces/plugboard-connector-log.d.ts" />
/// <reference path="./interfaces/plugboard-connector-plugin.d.ts" />
/// <reference path="./interfaces/plugboard-connector-tool-types.d.ts" />
/// <reference path="./interfaces/plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/connector-with-hints@0.1.0' {
  export type * as PlugboardConnectorAiTools010 from 'plugboard:connector/ai-tools@0.1.0'; // import plugboard:connector/ai-tools@0.1.0
  export type * as PlugboardConnectorAiTypes010 from 'plugboard:connector/ai-types@0.1.0'; // import plugboard:connector/ai-types@0.1.0
  export type * as PlugboardConnectorAi010 from 'plugboard:connector/ai@0.1.0'; // import plugboard:connector/ai@0.1.0
  export type * as PlugboardConnectorConfig010 from 'plugboard:connector/config@0.1.0'; // import plugboard:connector/config@0.1.0
  export type * as PlugboardConnectorEmit010 from 'plugboard:connector/emit@0.1.0'; // import plugboard:connector/emit@0.1.0
  export type * as PlugboardConnectorHttp010 from 'plugboard:connector/http@0.1.0'; // import plugboard:connector/http@0.1.0
  export type * as PlugboardConnectorKv010 from 'plugboard:connector/kv@0.1.0'; // import plugboard:connector/kv@0.1.0
  export type * as PlugboardConnectorLog010 from 'plugboard:connector/log@0.1.0'; // import plugboard:connector/log@0.1.0
  export type * as PlugboardConnectorToolTypes010 from 'plugboard:connector/tool-types@0.1.0'; // import plugboard:connector/tool-types@0.1.0
  export type * as PlugboardConnectorTypes010 from 'plugboard:connector/types@0.1.0'; // import plugboard:connector/types@0.1.0
  export * as actionHints from 'plugboard:connector/action-hints@0.1.0'; // export plugboard:connector/action-hints@0.1.0
  export * as plugin from 'plugboard:connector/plugin@0.1.0'; // export plugboard:connector/plugin@0.1.0
}
