// An insert function: enrich each event before it is sent, or drop it.
// Drops events from internal test accounts, and adds a plan tier the destination can filter on.
async function onTrack(event, settings) {
  return enrich(event, settings);
}

async function onIdentify(event, settings) {
  return enrich(event, settings);
}

function enrich(event, settings) {
  const email = _.get(event, 'traits.email') || _.get(event, 'properties.email') || '';
  if (settings.internalDomain && email.endsWith('@' + settings.internalDomain)) {
    throw new DropEvent(`internal account ${email}`);
  }
  const plan = _.get(event, 'traits.plan') || _.get(event, 'properties.plan');
  const tiers = settings.tiers || { free: 'self-serve', pro: 'sales-assisted', enterprise: 'key-account' };
  event.context = { ...event.context, planTier: tiers[plan] || 'unknown' };
  return event;
}
