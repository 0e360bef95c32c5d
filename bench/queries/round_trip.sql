-- The floor: a request transaction that does nothing but answer.
select 1
