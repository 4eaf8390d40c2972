// Customer.io's webhooks as Segment track events, the way Customer.io's own router does it
// (route_to_segment): event "customerio:<event_type>", the webhook's `data` as properties,
// its event_id in context. The event_id is the messageId, so a webhook Customer.io sends again
// is stored once.
async function onRequest(request, settings) {
  const body = request.json();
  const webhooks = Array.isArray(body) ? body : [body];
  for (const webhook of webhooks) {
    if (!webhook || !webhook.event_type) {
      throw new InvalidEventPayload('not a Customer.io webhook: event_type is missing');
    }
    const data = webhook.data || {};
    const userId = data.customer_id || data.identifiers && data.identifiers.id;
    Segment.track({
      event: `${settings.eventPrefix || 'customerio:'}${webhook.event_type}`,
      userId: userId ? String(userId) : undefined,
      anonymousId: userId ? undefined : data.email_address,
      properties: data,
      context: { event_id: webhook.event_id, source: 'Customer.io' },
      timestamp: webhook.timestamp ? new Date(webhook.timestamp * 1000).toISOString() : undefined,
      messageId: webhook.event_id ? `cio-${webhook.event_id}` : undefined
    });
  }
}
