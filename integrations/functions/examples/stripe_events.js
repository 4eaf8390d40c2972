// Stripe events as Segment calls, after segmentio/functions-library's stripe-events source,
// with its bug fixed (it passed `properties` to identify, where Segment keeps only traits).
// Verify the Stripe-Signature with the hub: or use the built-in "Stripe" source kind, which does.
async function onRequest(request, settings) {
  const stripeEvent = request.json();
  const object = stripeEvent.data && stripeEvent.data.object || {};
  const base = {
    messageId: `stripe-${stripeEvent.id}`,
    timestamp: new Date(stripeEvent.created * 1000).toISOString(),
    context: { source: 'Stripe', livemode: stripeEvent.livemode }
  };
  switch (stripeEvent.type) {
    case 'customer.created':
    case 'customer.updated':
      Segment.identify({ ...base, userId: object.id,
        traits: { email: object.email, name: object.name, phone: object.phone, createdAt: object.created } });
      break;
    case 'charge.succeeded':
    case 'charge.refunded':
      Segment.track({ ...base, userId: object.customer || object.billing_details && object.billing_details.email,
        event: stripeEvent.type === 'charge.succeeded' ? 'Charge Succeeded' : 'Charge Refunded',
        properties: { amount: object.amount / 100, currency: object.currency, chargeId: object.id } });
      break;
    case 'invoice.paid':
      Segment.track({ ...base, userId: object.customer, event: 'Invoice Paid',
        properties: { amount: object.amount_paid / 100, currency: object.currency, invoiceId: object.id } });
      break;
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
    case 'customer.subscription.trial_will_end': {
      const names = { created: 'Subscription Started', updated: 'Subscription Updated',
        deleted: 'Subscription Cancelled', trial_will_end: 'Trial Ending' };
      const item = object.items && object.items.data && object.items.data[0];
      Segment.track({ ...base, userId: object.customer, event: names[stripeEvent.type.split('.')[2]],
        properties: { subscriptionId: object.id, status: object.status,
          plan: item && item.price && (item.price.nickname || item.price.id) } });
      break;
    }
    case 'checkout.session.completed':
      Segment.track({ ...base, userId: object.customer || undefined,
        anonymousId: object.customer ? undefined : (object.customer_details && object.customer_details.email),
        event: 'Checkout Completed',
        properties: { amount: object.amount_total / 100, currency: object.currency, sessionId: object.id } });
      break;
    default:
      // Other event types are acknowledged (200) and not stored: Stripe does not send them again.
      console.log(`ignored ${stripeEvent.type}`);
  }
}
