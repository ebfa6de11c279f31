-- The users a lead's figures belong to (owner and collaborators, trimmed, without blanks or
-- repeats, sorted): the SQL twin of `followup_readmodel::lead_members`. Its own file, outside the
-- projection's DDL that `rebuild` runs in a shadow schema: the function must stay in `public`
-- when the shadow schema is dropped.
CREATE OR REPLACE FUNCTION public.followup_lead_members(owner TEXT, collaborators TEXT[])
RETURNS TEXT[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(array_agg(DISTINCT m ORDER BY m), '{}')
  FROM (SELECT btrim(u) AS m FROM unnest(array_prepend(owner, collaborators)) AS u) t
  WHERE m IS NOT NULL AND m <> ''
$$;
