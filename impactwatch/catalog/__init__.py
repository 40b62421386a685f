"""The catalog: data products, teams, pipelines and the cost model, in the business's words.

Foundations: imports nothing else of impactwatch. `loader` reads the YAML (file:line errors),
`model` validates and answers questions, `airflow_merge` adds what Airflow declares.
"""
