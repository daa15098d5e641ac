-- A release is one version with the builds the feed lists for it (updraft_feed::releases). A
-- rollout stored before held one build: that build becomes the release's only one.
UPDATE rollouts
   SET release = json_object(
         'platform', json_extract(release, '$.platform'),
         'product_version', json_extract(release, '$.product_version'),
         'product_version_extra', json_extract(release, '$.product_version_extra'),
         'builds', json_array(json_object(
             'build', json_extract(release, '$.build'),
             'prerequisite_build', json_extract(release, '$.prerequisite_build'),
             'supported_devices', json(json_extract(release, '$.supported_devices')))))
 WHERE json_type(release, '$.builds') IS NULL;
