-- Briefings still `claimed`: few at any time (a daily run in flight, an
-- on-demand one being sent), looked up by age to find the abandoned ones.
CREATE INDEX briefings_claimed ON briefings (claimed_at) WHERE status = 'claimed';
