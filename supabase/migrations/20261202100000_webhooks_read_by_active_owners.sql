-- A suspended user reads nothing but their own profile. The read policies of the webhook
-- tables asked only for ownership, so a suspended owner still read their generations'
-- webhook URLs and the delivery log (status, errors, generation ids). They now ask for an
-- active user too, as every other table's policy does.

alter policy "owners can read their generations' webhooks"
on public.generation_webhooks
using (owner_id = (select auth.uid()) and (select private.is_active_user()));

alter policy "owners can read their webhook deliveries"
on public.webhook_deliveries
using (owner_id = (select auth.uid()) and (select private.is_active_user()));
