"""The built-in drugs, registered in the catalog: clinical default doses, PK half-lives, sizes, and mechanisms.

Every entry carries its source or is marked "assumed" with the reasoning. Concentrations
are plasma µg/mL; ``ec50_ug_ml`` is the concentration for half the maximal effect (Emax law).
``csf_fraction`` is the CNS/plasma exposure ratio through an intact BBB (large antibodies
~0.1-0.3 %, small proteins a few %); a breached BBB raises it towards 1. ``masks_fever``: once
given, fever is no longer required to grade CRS; the ASTCT consensus (Lee, BBMT 2019) names
tocilizumab and corticosteroids, so only those declare it.
"""

from __future__ import annotations

from carabm.io.catalog import Drug, register_drug

for _drug in (
    Drug("tocilizumab", "IL6R", 8.0, None, 800.0, "iv", 11 * 24.0, 0.1, None, 1.0, 1.0, 0.002,
         source="dose 8 mg/kg (max 800 mg) and effective half-life up to 11-13 days: Actemra prescribing information; "
                "V ~0.1 L/kg (IgG, plasma volume); EC50 1 ug/mL assumed (trough levels far above); CSF ~0.2 % of IgG assumed",
         masks_fever=True),
    Drug("siltuximab", "IL6", 11.0, None, None, "iv", 20.6 * 24.0, 0.07, None, 1.0, 1.0, 0.002,
         source="dose 11 mg/kg and half-life ~20.6 days: Sylvant prescribing information; EC50 assumed"),
    Drug("anakinra", "IL1", None, 100.0, None, "sc", 0.68, 0.142, 0.139, 0.0026, 1.0, 0.03,
         source="100 mg SC daily: Kineret prescribing information, whose 4-6 h half-life after SC injection is absorption-limited "
                "(flip-flop): absorption 0.139/h = ln 2 / 5 h; one-compartment population PK in RA (Yang, Ann Rheum Dis 2001 "
                "abstract FRI0036): V/F 0.142 L/kg; CL/F 170 mL/min with normal renal function (Yang, Clin Pharmacol Ther "
                "2003), so elimination half-life ln 2 V / CL = 0.68 h; small protein (17 kDa): CSF a few % of plasma, assumed; "
                "EC50 0.0026 ug/mL: IL-1Ra binds IL-1RI with KD 150 pM (Dripps, J Biol Chem 1991), i.e. 2.6 ng/mL at 17.3 kDa; a "
                "competitive antagonist shifts the IL-1 response by 1 + C/KD (the free fraction 1 - Emax law here), while the model's IL-1 "
                "responses keep their own half-maxima. The 100-fold molar excess needed to halve IL-1 effects (Arend, Adv Immunol 1993) "
                "is that shift against IL-1 far above its half-maximal level, not the antagonist's own constant"),
    Drug("dexamethasone", "steroid", None, 10.0, None, "iv", 4.0, 0.8, None, 0.01, 0.9, 0.5,
         source="10 mg IV every 6 h for ICANS (ASTCT/SITC practice); plasma half-life 3-5 h; crosses the BBB; "
                "EC50 and Emax assumed", masks_fever=True),
    Drug("methylprednisolone", "steroid", 1.0, None, None, "iv", 2.5, 1.2, None, 0.06, 0.9, 0.3,
         source="1 mg/kg IV every 12 h (CRS management); half-life 2-3 h; 5x less potent than dexamethasone, "
                "EC50 scaled accordingly (assumed)", masks_fever=True),
    Drug("lenzilumab", "GMCSF", 10.0, None, None, "iv", 14 * 24.0, 0.07, None, 1.0, 1.0, 0.002,
         source="10 mg/kg as in Sterner, Blood 2019 (mice, daily x10); IgG1 half-life ~2 weeks assumed; EC50 assumed"),
    Drug("emapalumab", "IFNg", 1.0, None, None, "iv", 22 * 24.0, 0.07, None, 0.5, 1.0, 0.002,
         source="1 mg/kg starting dose and half-life ~22 days: Gamifant prescribing information; EC50 assumed"),
    Drug("dasatinib", "CAR_signalling", None, 100.0, None, "oral", 4.0, 30.0, 1.0, 0.002, 0.95, 0.2,
         source="100 mg oral daily, half-life 3-5 h: Sprycel prescribing information; IC50 for CAR-T signalling "
                "~nM assumed (Mestermann, Sci Transl Med 2019 reports reversible blockade)"),
    Drug("monocyte_depletion", "deplete:monocyte", None, 1.0, None, "iv", 72.0, 1.0, None, 1.0, 1.0, 0.0,
         depletion_fraction=0.9, depletion_h=24.0,
         source="experimental (clodronate-like); removes 90 % of monocytes within a day, effect over ~3 days; assumed"),
    Drug("macrophage_depletion", "deplete:macrophage", None, 1.0, None, "iv", 72.0, 1.0, None, 1.0, 1.0, 0.0,
         depletion_fraction=0.9, depletion_h=24.0,
         source="experimental (clodronate-like); removes 90 % of macrophages within a day; assumed"),
):  # fmt: skip
    register_drug(_drug)
