let token_expiry_ms = 10 * 60 * 1000; // start with 10 minutes
let token = null;
async function getAccessToken(settings) {
const now = new Date().getTime();
if (!token || now - token.ts > token_expiry_ms) {
const auth_payload = {
grant_type: 'client_credentials',
client_id: settings.clientid,
client_secret: settings.clientsecret,
scope: 'journeys_read list_and_subscribers_read',
account_id: settings.sfmcmid
};

const resp = await fetch(settings.sfmcAuthenticationEndpoint, {
method: 'POST',
headers: {
'Content-Type': 'application/json'
},
body: JSON.stringify(auth_payload)
}).then(resp => resp.json());
token_expiry_ms = resp.expires_in * 1000; // set token expiry time
token = {
ts: now,
value: resp.access_token
};
}
return token.value;
}

async function onIdentify(event, settings) {
const journey_payload = {
ContactKey: event.userId,
EventDefinitionKey: settings.sfmcJourneyKey,
Data: {
userid: event.userId,
email: event.traits.email,
name: event.traits.name,
industry: event.traits.company.industry
}
};
const sfmctoken = await getAccessToken(settings);
let response;
try {
response = await fetch(settings.sfmcPostJourneyEndpoint, {
method: 'POST',
headers: {
Authorization: `Bearer ${sfmctoken}`,
'Content-Type': 'application/json'
},
body: JSON.stringify(journey_payload)
});
} catch (error) {
// Retry on connection error
throw new RetryError(error.message);
}

if (response.status >= 500 || response.status === 429) {
// Retry on 5xx (server errors) and 429s (rate limits)
throw new RetryError(`Failed with ${response.status}`);
}
}
