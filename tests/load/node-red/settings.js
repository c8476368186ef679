// Node-RED settings for the load comparison: the editor and admin API off, no logging per
// message, and `crypto` available to the verifying function node.
module.exports = {
    flowFile: 'flows.json',
    uiHost: '127.0.0.1',
    httpAdminRoot: false,
    logging: { console: { level: 'error', metrics: false, audit: false } },
    functionGlobalContext: { crypto: require('crypto') },
    credentialSecret: false,
};
