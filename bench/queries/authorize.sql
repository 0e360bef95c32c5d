-- The decision a client asks for: role, path and permissions on one generation.
select public.authorize_generation($1)
