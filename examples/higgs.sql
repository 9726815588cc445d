-- ember's main job: train a model in SQL, judge it, apply it.
-- Run with: ember sql --data-dir data/ml -f examples/higgs.sql
-- (data/ml/higgs from: ember datagen classification --rows 1000000 --out data/ml/higgs)

CREATE OR REPLACE MODEL higgs
  TRANSFORM (standard_scale(f0) AS f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27)
  OPTIONS (model_type = 'logistic_regression', label = 'label',
           data_split = 'random', eval_fraction = 0.2, seed = 7)
  AS SELECT label, f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27 FROM higgs;

-- Metrics on the held-out 20%.
EVALUATE MODEL higgs;

-- Loss per Newton step.
SELECT * FROM training_info('higgs');

-- Predictions as ordinary SQL, distributed like any other expression.
SELECT predict('higgs', f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27) AS predicted, count(*) AS rows,
       round(avg(predict_proba('higgs', f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27)), 4) AS mean_probability
FROM higgs GROUP BY 1 ORDER BY 1;
